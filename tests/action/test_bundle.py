"""The gru_action bundle through MONAI's own CLI, offline, on tiny real videos."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.bundle_readme import stated_recipe

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundles" / "gru_action"
CONFIGS = BUNDLE / "configs"


def _bundle(*args: object, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_metadata_verifies_offline_and_names_the_demo_classes() -> None:
    from action.video.synthetic import CLASSES

    meta = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))
    pred = meta["network_data_format"]["outputs"]["pred"]
    assert list(pred["channel_def"].values()) == list(CLASSES) and pred["num_channels"] == len(CLASSES)
    assert meta["version"] in meta["changelog"]
    _bundle("verify_metadata", "--meta_file", CONFIGS / "metadata.json", "--filepath", ROOT / "bundles" / "schema" / "meta_schema.json")
    _bundle("verify_net_in_out", "network_def", "--meta_file", CONFIGS / "metadata.json", "--config_file", CONFIGS / "train.json")


def test_readme_states_the_configured_recipe() -> None:
    stated = stated_recipe(BUNDLE)
    assert len(stated) >= 8
    for key, written, configured in stated:
        assert json.loads(written) == configured, key


@pytest.mark.slow
def test_the_bundle_trains_what_the_cli_trains_then_evaluates_and_predicts(tmp_path: Path, tiny_videos: Path) -> None:
    """One seeded epoch through `python -m monai.bundle run` and through `python -m action train` with the same settings:
    equal weights; then the bundle's evaluate and inference configs, through MONAI's runner, on that model."""
    import torch

    from action.cli import main
    from action.models.model_dir import ModelConfig

    bundle = tmp_path / "gru_action"
    shutil.copytree(CONFIGS, bundle / "configs")
    settings = "--frames 8 --size [32,32] --sampling#decode_size [36,36] --options#max_epochs 1 --options#verbose False --seed 4"
    _bundle(
        "run", "--config_file", bundle / "configs" / "train.json", "--bundle_root", bundle, "--dataset_dir", tiny_videos, *settings.split()
    )
    cli = tmp_path / "cli"
    same = "--model c3d_gru --frames 8 --size 32 --decode-size 36 --epochs 1 --batch-size 8 --lr 0.001 --val-fraction 0.1 --seed 4 --quiet"
    model_options = json.dumps({"hidden": 128, "dropout": 0.25, "reset_gate_mode": "after-multiplication"})
    flags = ["--data", str(tiny_videos), "--out", str(cli), *same.split(), "--model-options", model_options]
    assert main(["train", *flags]) == 0
    assert json.loads((cli / "action_model.json").read_text()) == json.loads((bundle / "models" / "action_model.json").read_text())
    ours, theirs = torch.load(cli / "model.pt", weights_only=True), torch.load(bundle / "models" / "model.pt", weights_only=True)
    assert list(ours) == list(theirs)
    for name, value in ours.items():
        torch.testing.assert_close(theirs[name], value, rtol=0, atol=0, msg=name)
    untrained = ModelConfig.load(cli).build(seed=4).state_dict()  # the weights both started from
    assert not torch.equal(untrained["classifier.weight"], ours["classifier.weight"])  # and they did train

    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'evaluate.json'}']"
    done = _bundle("run", "--config_file", configs, "--bundle_root", bundle, "--dataset_dir", tiny_videos, *settings.split())
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["videos"] == 16 and 0.0 <= report["accuracy"] <= 1.0
    assert (bundle / "eval" / "confusion_chart.png").is_file()
    video = sorted(tiny_videos.glob("Jump/*"))[0]
    done = _bundle("run", "--config_file", bundle / "configs" / "inference.json", "--bundle_root", bundle, "--videos", f"['{video}']")
    prediction = json.loads(done.stdout.strip().splitlines()[-1])[0]
    assert prediction["video"] == str(video) and len(prediction["top_k"]) == 5
