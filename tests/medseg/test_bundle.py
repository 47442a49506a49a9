"""The V-Net bundle through MONAI's own CLI, offline, with tiny overrides (model-zoo style smoke test)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.bundle_readme import stated_recipe

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "vnet_seg" / "configs"
TINY = ["--width", "4", "--options#max_epochs", "2", "--options#validation_frequency", "2", "--cache", "none"]


def _bundle(*args, timeout=600):
    done = subprocess.run([sys.executable, "-m", "monai.bundle", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_inference_config_mirrors_training():
    train, infer = (json.loads((CONFIGS / name).read_text()) for name in ("train.json", "inference.json"))
    for key in ("pixdim", "window", "roi_size", "overlap", "width", "network_def", "segmenter", "colours", "channel_def", "label_names"):
        assert infer[key] == train[key], key
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text())
    assert set(evaluate) <= {"ckpt_path", "eval_dir", "eval_split", "eval_items", "load_weights", "evaluate", "run"}  # overrides only


def test_metadata_names_every_label_and_verifies_offline():
    meta = json.loads((CONFIGS / "metadata.json").read_text())
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == {"0": "background", "1": "liver", "2": "kidney", "3": "tumour"}
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(channel_def)
    assert meta["version"] in meta["changelog"]
    _bundle("verify_metadata", "--meta_file", CONFIGS / "metadata.json", "--filepath", ROOT / "bundles" / "schema" / "meta_schema.json")


def test_network_matches_its_declared_shapes():
    _bundle("verify_net_in_out", "network_def", "--meta_file", CONFIGS / "metadata.json", "--config_file", CONFIGS / "train.json", "--n", 2, "--width", 4)


def test_bundle_readme_states_the_configured_recipe():
    stated = stated_recipe(ROOT / "bundles" / "vnet_seg")
    assert stated, "the README's recipe table is missing"
    for key, written, configured in stated:
        assert json.dumps(configured) == written, key


@pytest.mark.slow
def test_train_evaluate_infer_export_through_monai_cli(tmp_path, demo_dataset):
    bundle = tmp_path / "vnet_seg"
    shutil.copytree(CONFIGS, bundle / "configs")
    common = ["--bundle_root", bundle, "--dataset_dir", demo_dataset]
    train = _bundle("run", "--config_file", bundle / "configs" / "train.json", *common, *TINY)
    assert "Training finished: Max epochs completed" in train.stdout
    weights = bundle / "models" / "model.pt"
    assert weights.is_file() and (bundle / "models" / "training_progress.png").is_file()
    configs = f"['{bundle / 'configs' / 'train.json'}','{bundle / 'configs' / 'evaluate.json'}']"
    _bundle("run", "--config_file", configs, *common, "--width", 4)
    summary = json.loads((bundle / "eval" / "summary.json").read_text())
    assert summary["cases"] == 2 and set(summary["per_label"]) == {"liver", "kidney", "tumour"}
    assert (bundle / "eval" / "pred" / "case_004_seg.nii.gz").is_file() and (bundle / "eval" / "pred" / "case_005.seg.nrrd").is_file()
    _bundle("run", "--config_file", bundle / "configs" / "inference.json", *common, "--width", 4)
    assert sorted(p.name for p in (bundle / "eval" / "inference").iterdir()) == [
        "case_004.seg.nrrd", "case_004_seg.ctbl", "case_004_seg.nii.gz", "case_005.seg.nrrd", "case_005_seg.ctbl", "case_005_seg.nii.gz",
    ]  # fmt: skip
    exported = tmp_path / "model.ts"
    _bundle("ckpt_export", "network_def", "--filepath", exported, "--ckpt_file", weights, "--meta_file", bundle / "configs" / "metadata.json",
            "--config_file", bundle / "configs" / "train.json", "--width", 4, "--use_trace", "True", "--input_shape", "[1, 1, 32, 32, 32]")  # fmt: skip
    scripted = torch.jit.load(str(exported)).eval()
    from medseg.networks import VNet

    net = VNet(out_channels=4, width=4, dropout_prob_down=0.2, dropout_prob_up=(0.2, 0.2))
    net.load_state_dict(torch.load(weights, weights_only=True))
    x = torch.rand(1, 1, 32, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net.eval()(x), rtol=1e-4, atol=1e-4)
