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


@pytest.mark.parametrize("name", NAMES)
def test_every_config_has_the_device_keys_and_multi_gpu_initialises_a_process_group(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bundle keys of issue 24, and multi_gpu_train.json's initialize run for real (a 1-process gloo group on the CPU)."""
    import torch.distributed as dist
    from monai.bundle import ConfigParser

    from shared.distributed import free_port

    configs = template_dir(name) / "configs"
    train = json.loads((configs / "train.json").read_text(encoding="utf-8"))
    assert (train["device"], train["precision"], train["num_workers"], train["deterministic"]) == ("auto", "fp32", 0, False)
    assert train["options"]["execution_environment"] == "@device" and train["options"]["precision"] == "@precision"
    assert json.loads((configs / "inference.json").read_text(encoding="utf-8"))["device"] == "auto"
    for key, value in {
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(key, value)
    parser = ConfigParser()
    parser.read_config([str(configs / "train.json"), str(configs / "multi_gpu_train.json")])
    parser.update({"device": "cpu"})
    try:
        parser.get_parsed_content("initialize")
        assert dist.is_initialized() and dist.get_backend() == "gloo"
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.parametrize("name, config", [("vnet_seg", "train.json"), ("vnet_seg", "inference.json"), ("gru_action", "train.json")])
def test_a_template_run_without_its_dataset_says_so_in_one_line(name: str, config: str, tmp_path: Path) -> None:
    """No default dataset path (it would depend on the working folder): MONAI's own runner stops with one line naming
    ``--dataset_dir``, not a traceback whose cause is buried."""
    import subprocess
    import sys

    from medseg.workflow import copy_with_fresh_weights

    # inference needs weights first (their absence is its own error): untrained ones
    bundle = (
        copy_with_fresh_weights(template_dir(name), tmp_path / name) if config == "inference.json" else init_bundle(name, tmp_path / name)
    )
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(config_file(bundle, config)), "--bundle_root", str(bundle)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1 and last.startswith("error: the bundle needs --dataset_dir (") and "Traceback" not in done.stderr
    assert not (bundle / "eval").exists() and not (bundle / "models" / "checkpoints").exists()
