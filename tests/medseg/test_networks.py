import pytest
import torch
from monai.networks.nets import VNet as MonaiVNet

from medseg.networks import PadToMultiple, VNet


def test_width_16_is_monais_vnet():
    ours, theirs = VNet(in_channels=1, out_channels=3, width=16), MonaiVNet(in_channels=1, out_channels=3)
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(ref) and all(mine[k].shape == ref[k].shape for k in ref)
    ours.load_state_dict(ref)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


def test_width_scales_parameters_quadratically():
    count = lambda w: sum(p.numel() for p in VNet(out_channels=2, width=w).parameters())  # noqa: E731
    assert 3.8 < count(16) / count(8) < 4.2


def test_forward_shape_and_any_size_through_padding():
    net = PadToMultiple(VNet(out_channels=3, width=4).eval())
    with torch.no_grad():
        assert net(torch.randn(1, 1, 20, 17, 33)).shape == (1, 3, 20, 17, 33)


def test_padding_is_cropped_back_exactly():
    x = torch.randn(2, 1, 19, 16, 5)
    torch.testing.assert_close(PadToMultiple(torch.nn.Identity())(x), x)


def test_width_must_divide_by_input_channels():
    with pytest.raises(ValueError, match=r"width=6 must be a positive multiple of in_channels=4"):
        VNet(in_channels=4, width=6)
