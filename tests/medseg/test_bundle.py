"""The V-Net bundle through MONAI's own CLI, offline, with tiny overrides (model-zoo style smoke test)."""

import json
import subprocess
import sys
from pathlib import Path

from tests.bundle_readme import stated_recipe

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "bundles" / "vnet_seg" / "configs"
SCHEMA = ROOT / "bundles" / "schema" / "meta_schema.json"
TINY = ["--width", "4", "--options#max_epochs", "2", "--options#validation_frequency", "2", "--cache", "none"]


def _bundle(*args, timeout=600):
    done = subprocess.run(
        [sys.executable, "-m", "monai.bundle", *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done


def test_inference_config_takes_the_model_settings_from_the_trained_record():
    """inference.json repeats no training value: the model ids are null (= as trained, models/model.json) and a value
    given for one reaches the factory, which compares it with the record; train.json records every one of them."""
    from medseg.model_record import MODEL_IDS

    train, infer = (json.loads((CONFIGS / name).read_text(encoding="utf-8")) for name in ("train.json", "inference.json"))
    assert all(infer[key] is None for key in MODEL_IDS)
    assert infer["segmenter"]["_target_"] == "medseg.inference.trained.trained_segmenter"
    assert infer["segmenter"]["settings"] == {key: f"@{key}" for key in MODEL_IDS}
    recorded = train["model_record"]["settings"]
    assert {key: recorded[key] for key in MODEL_IDS} == {key: f"@{key}" for key in MODEL_IDS}
    assert recorded["overlap"] == "@overlap" and recorded["sw_batch_size"] == "@sw_batch_size"  # inference's defaults: validation's
    assert "@model_record" in train["trainer"]["handlers"]
    evaluate = json.loads((CONFIGS / "evaluate.json").read_text(encoding="utf-8"))
    assert set(evaluate) <= {
        "ckpt_path",
        "eval_dir",
        "eval_split",
        "eval_items",
        "segmenter",
        "evaluate",
        "run",
        "_comment",
    }  # overrides only
    assert evaluate["segmenter"]["_target_"] == "medseg.inference.trained.trained_segmenter"
    # validation runs the inference path (medseg.inference.inferer.VolumeInferer) with inference's window settings
    assert train["validate"]["inferer"] == {
        "_target_": "medseg.inference.inferer.VolumeInferer",
        "roi_size": "@sw_roi_size",
        "sw_batch_size": "@sw_batch_size",
        "overlap": "@overlap",
    }


def test_metadata_names_every_label_and_verifies_offline():
    meta = json.loads((CONFIGS / "metadata.json").read_text(encoding="utf-8"))
    channel_def = meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert channel_def == {"0": "background", "1": "liver", "2": "kidney", "3": "tumour"}
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == len(channel_def)
    assert meta["version"] in meta["changelog"]
    _bundle("verify_metadata", "--meta_file", CONFIGS / "metadata.json", "--filepath", SCHEMA)


def test_network_matches_its_declared_shapes():
    """MONAI's check with its defaults (n = 1: the smallest shape the metadata declares), as a user runs it."""
    _bundle(
        "verify_net_in_out",
        "network_def",
        "--meta_file",
        CONFIGS / "metadata.json",
        "--config_file",
        CONFIGS / "inference.json",
        "--bundle_root",
        CONFIGS.parent,  # an untrained bundle's network is its train.json's
    )


def test_bundle_readme_states_the_configured_recipe():
    stated = stated_recipe(ROOT / "bundles" / "vnet_seg")
    assert stated, "the README's recipe table is missing"
    for key, written, configured in stated:
        assert json.dumps(configured) == written, key


# Training, evaluation, inference.json and ckpt_export through `python -m monai.bundle` are run by
# tutorials 1 and 2 (tests/docs/test_tutorials.py), which check the TorchScript export against the
# PyTorch model and inference.json's masks against the evaluation's.
