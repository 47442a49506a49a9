"""medact_bundles: the shipped templates, copied into a user's folder, name their folder '.' and check what they are given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medact_bundles import NAMES, BundleError, config_file, init_bundle, schema_file, template_dir


@pytest.mark.parametrize("name", NAMES)
def test_init_bundle_copies_configs_docs_and_licence_only(name: str, tmp_path: Path) -> None:
    template = template_dir(name)
    (tmp_path / "empty").mkdir()  # an empty folder may be the destination
    bundle = init_bundle(name, tmp_path / "empty")
    assert sorted(p.name for p in bundle.iterdir()) == ["LICENSE", "configs", "docs"]
    for path in (template / "configs").iterdir():
        assert (bundle / "configs" / path.name).read_bytes() == path.read_bytes()
    for config in ("train.json", "inference.json"):
        assert json.loads(config_file(bundle, config).read_text(encoding="utf-8"))["bundle_root"] == "."
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".init-bundle")], "no temporary folder left"


def test_schema_ships_with_the_templates() -> None:
    schema = json.loads(schema_file().read_text(encoding="utf-8"))
    assert "network_data_format" in schema["properties"]


def test_unknown_template_and_bad_folders_are_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="No bundle template 'unet'; medact ships vnet_seg, gru_action"):
        template_dir("unet")
    (tmp_path / "file").write_text("x")
    with pytest.raises(BundleError, match=f"{tmp_path / 'file'}: exists and is not empty"):
        init_bundle("vnet_seg", tmp_path / "file")
    bundle = init_bundle("vnet_seg", tmp_path / "b")
    (bundle / "configs" / "train.json").write_text("{not json")
    with pytest.raises(BundleError, match="train.json: not valid JSON"):
        config_file(bundle, "train.json")
    with pytest.raises(BundleError, match="evaluate2.json: missing"):
        config_file(bundle, "evaluate2.json")
