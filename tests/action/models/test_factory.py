"""action.models.factory: every named model builds, runs on its input kind, and order-blindness is where it should be."""

from __future__ import annotations

import pytest
import torch

from action.models.factory import MODELS, build_model


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_maps_its_input_to_class_logits(name: str) -> None:
    torch.manual_seed(0)
    kind = MODELS[name].input
    model = build_model(name, 5, frames=8, size=(32, 32), in_features=None if kind == "clip" else 12).eval()
    x = torch.rand(2, 3, 8, 32, 32) if kind == "clip" else torch.rand(2, 8, 12)
    out = model(x)
    assert out.shape == (2, 5) and torch.isfinite(out).all()
    out.sum().backward()  # trainable end to end
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_frame_average_is_blind_to_order_and_gru_models_are_not() -> None:
    torch.manual_seed(0)
    clip = torch.rand(2, 3, 8, 32, 32)
    reversed_clip = clip.flip(2)
    blind = build_model("frame_average", 4, 8, (32, 32)).eval()
    torch.testing.assert_close(blind(clip), blind(reversed_clip))
    for name in ("c3d_gru", "cnn_gru", "attention_lstm"):
        model = build_model(name, 4, 8, (32, 32)).eval()
        assert not torch.allclose(model(clip), model(reversed_clip), atol=1e-5), name


def test_paper_001_geometry_and_errors() -> None:
    model = build_model("c3d_gru", 6)  # 20x64x64 -> three 2x2x2 pools -> 2 steps of 64*8*8 features
    assert model.head.rnn.input_size == 64 * 8 * 8 and model.head.hidden_size == 128
    with pytest.raises(ValueError, match="Unknown model 'c4d'"):
        build_model("c4d", 3)
    with pytest.raises(ValueError, match="too few"):
        build_model("c3d_gru", 3, frames=4)
    with pytest.raises(ValueError, match="needs in_features"):
        build_model("feature_gru", 3)
