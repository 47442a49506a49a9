import pytest
import torch
from monai.networks.nets import VNet as MonaiVNet

from medseg.networks import PadToMultiple, VNet, fold_batch_norm


def test_width_16_is_monais_vnet():
    ours, theirs = VNet(in_channels=1, out_channels=3, width=16), MonaiVNet(in_channels=1, out_channels=3)
    mine, ref = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(ref) and all(mine[k].shape == ref[k].shape for k in ref)
    ours.load_state_dict(ref)
    ours.eval(), theirs.eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x))


@pytest.mark.parametrize("in_channels", [1, 2])
def test_a_seed_gives_monais_initial_weights(in_channels):
    """Seeded recipes were measured on MONAI's initialisation: the same seed must draw the same weights."""
    torch.manual_seed(3)
    ours = VNet(in_channels=in_channels, out_channels=3, width=16).state_dict()
    torch.manual_seed(3)
    theirs = MonaiVNet(in_channels=in_channels, out_channels=3).state_dict()
    for key, value in theirs.items():
        torch.testing.assert_close(ours[key], value, msg=key)


def test_width_scales_parameters_quadratically():
    count = lambda w: sum(p.numel() for p in VNet(out_channels=2, width=w).parameters())
    assert 3.8 < count(16) / count(8) < 4.2


def test_forward_shape_and_any_size_through_padding():
    net = PadToMultiple(VNet(out_channels=3, width=4).eval())
    with torch.no_grad():
        assert net(torch.randn(1, 1, 20, 17, 33)).shape == (1, 3, 20, 17, 33)


def test_padding_is_cropped_back_exactly():
    x = torch.randn(2, 1, 19, 16, 5)
    torch.testing.assert_close(PadToMultiple(torch.nn.Identity())(x), x)


def test_any_width_takes_any_input_channels_with_the_tiled_input_cut_at_the_width():
    """A cascade's fine stage: 8 inputs into width 4. The residual is the first 4 input channels, so a network whose
    convolution is zeroed passes exactly those through the input block (ELU of the input)."""
    net = VNet(in_channels=8, out_channels=3, width=4).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 8, 16, 16, 16)).shape == (1, 3, 16, 16, 16)
        for p in net.in_tr.conv_block.parameters():
            p.zero_()
        net.in_tr.conv_block.adn.N.running_mean.zero_()
        x = torch.randn(1, 8, 4, 4, 4)
        torch.testing.assert_close(net.in_tr(x), torch.nn.functional.elu(x[:, :4]))
        x = torch.randn(1, 3, 4, 4, 4)  # 3 inputs into 4: the tiling wraps round to channel 0
        three = VNet(in_channels=3, out_channels=2, width=4).in_tr.eval()
        for p in three.conv_block.parameters():
            p.zero_()
        three.conv_block.adn.N.running_mean.zero_()
        torch.testing.assert_close(three(x), torch.nn.functional.elu(x[:, [0, 1, 2, 0]]))
    with pytest.raises(ValueError, match=r"width=0 and in_channels=1 must be positive"):
        VNet(in_channels=1, width=0)


def _with_trained_statistics(net: torch.nn.Module) -> torch.nn.Module:
    """Batch norms with non-trivial running statistics and affine terms, as after training."""
    gen = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm3d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) - 0.5)
    return net.eval()


@pytest.mark.parametrize("make", [lambda: VNet(out_channels=3, width=8), lambda: MonaiVNet(in_channels=1, out_channels=3)])
def test_folded_batch_norm_gives_the_same_logits_and_leaves_the_input_alone(make):
    net = _with_trained_statistics(make()).train()
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules()) and not folded.training
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in net.modules()) > 20 and net.training
    x = torch.randn(1, 1, 32, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), atol=1e-5, rtol=1e-4)


def test_channels_last_changes_the_layout_not_the_values():
    fast, plain = VNet(out_channels=3, width=8), VNet(out_channels=3, width=8, channels_last=False)
    plain.load_state_dict(fast.state_dict())
    assert fast.in_tr.conv_block.conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    assert list(fast.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 1, 16, 32, 16)
    with torch.no_grad():
        torch.testing.assert_close(fast.eval()(x), plain.eval()(x), atol=1e-5, rtol=1e-4)


def test_vnet_compiles_to_torchscript():
    net = VNet(out_channels=2, width=4).eval()
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(net)(x), net(x))


def test_instance_norm_is_instance_norm_and_keeps_channels_last():
    net = VNet(out_channels=3, width=4, norm="instance")
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())
    norm = net.down_tr32.bn1  # GroupNorm with one channel per group
    reference = torch.nn.InstanceNorm3d(norm.num_channels, affine=True)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5), norm.bias.uniform_(-0.5, 0.5)
        reference.weight.copy_(norm.weight), reference.bias.copy_(norm.bias)
    x = torch.randn(2, norm.num_channels, 6, 5, 4) * 3 + 1
    torch.testing.assert_close(norm(x), reference(x), atol=1e-5, rtol=1e-5)
    fast = x.contiguous(memory_format=torch.channels_last_3d)  # the layout the network keeps its activations in
    with torch.no_grad():
        assert norm(fast).is_contiguous(memory_format=torch.channels_last_3d)  # InstanceNorm3d would return the default layout


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_instance_and_group_norm_compute_the_same_in_training_and_inference(norm):
    # the property batch norm lacks: its eval mode uses running statistics gathered on training patches
    torch.manual_seed(0)
    net = VNet(out_channels=3, width=8, norm=norm, dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0))
    x = torch.randn(2, 1, 32, 32, 32)  # instance statistics need more than one voxel at the deepest (1/16) level
    with torch.no_grad():
        torch.testing.assert_close(net.train()(x), net.eval()(x))
        torch.testing.assert_close(fold_batch_norm(net)(x), net(x))  # nothing to fold: the same network
    batch = VNet(out_channels=3, width=8, dropout_prob_down=0.0, dropout_prob_up=(0.0, 0.0))
    with torch.no_grad():
        assert not torch.allclose(batch.train()(x), batch.eval()(x), atol=1e-3)


def test_group_norm_groups_four_channels():
    net = VNet(out_channels=2, width=8, norm="group")
    assert net.down_tr32.bn1.num_groups == 16 // 4 and net.in_tr.conv_block.adn.N.num_groups == 8 // 4


def test_unknown_norm_is_refused():
    with pytest.raises(ValueError, match=r"norm='layer' is invalid; expected one of \('batch', 'instance', 'group'\)"):
        VNet(norm="layer")


@pytest.mark.parametrize("in_channels", [1, 8])  # 8 into width 4: the cascade's fine stage (TiledInputTransition's own conv)
def test_kernel_size_3_replaces_every_5x5x5_convolution_and_keeps_the_rest(in_channels):
    five, three = (VNet(in_channels=in_channels, out_channels=3, width=4, norm="instance", kernel_size=k) for k in (5, 3))
    edges = lambda net: sorted({m.kernel_size for m in net.modules() if isinstance(m, torch.nn.Conv3d)})
    assert edges(five) == [(1, 1, 1), (2, 2, 2), (5, 5, 5)] and edges(three) == [(1, 1, 1), (2, 2, 2), (3, 3, 3)]
    assert list(five.state_dict()) == list(three.state_dict())  # the same layers, only the 5^3 weights shrink
    count = lambda net: sum(p.numel() for p in net.parameters())
    assert 0.2 < count(three) / count(five) < 0.25  # 27 / 125 of the 5^3 weights, the 2^3 and 1^3 ones unchanged
    x = torch.randn(1, in_channels, 32, 32, 32)
    assert three(x).shape == (1, 3, 32, 32, 32) and three.init_config["kernel_size"] == 3


def test_the_default_kernel_keeps_monais_random_stream():
    torch.manual_seed(5)
    default = VNet(out_channels=2, width=4).state_dict()
    torch.manual_seed(5)
    five = VNet(out_channels=2, width=4, kernel_size=5).state_dict()
    assert all(torch.equal(default[k], five[k]) for k in default)


@pytest.mark.parametrize("kernel_size", [0, 4, -3])
def test_an_even_or_non_positive_kernel_is_refused(kernel_size):
    with pytest.raises(ValueError, match=rf"kernel_size must be an odd positive integer, got {kernel_size}"):
        VNet(kernel_size=kernel_size)
