"""V-Net with a configurable width, and a wrapper that lets any input size through.

MONAI's ``VNet`` fixes the widths at 16-32-64-128-256 channels. Measured on this
2-core CPU, one 96^3 forward pass costs 617 GFLOP (4.7 s) and one 64^3 x2 training
step 15 s; the FLOPs grow with the square of the width, so halving it (``width=8``)
makes a step about 4x cheaper while keeping the topology of the paper (5x5x5 input
convolution with a residual, 4 strided down-convolutions with 1/2/3/2 residual
convolution stages, mirrored up path, 1x1x1 output). ``VNet(width=16)`` has exactly
MONAI's layers and state-dict keys, so MONAI checkpoints load into it.

Two CPU measures that change no result (``benchmarks/medseg_inference.py``): activations in
``channels_last_3d`` (oneDNN vectorises over channels; with 4-8 channels the default layout leaves
most SIMD lanes idle: one 64^3 forward at width 8 0.44 -> 0.36 s, a width-8 training step
0.99 -> 0.73 s), and, for inference, batch norm folded into the preceding convolution
(:func:`fold_batch_norm`, 0.37 -> 0.34 s).
"""

from __future__ import annotations

import copy

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import vnet as monai_vnet
from torch.nn.utils.fusion import fuse_conv_bn_eval


class TiledInputTransition(monai_vnet.InputTransition):
    """MONAI's V-Net input block (5x5x5 convolution plus the input tiled to ``out_channels``), for any channel counts.

    MONAI refuses an ``out_channels`` that is not a multiple of ``in_channels``; a cascade's fine stage takes the image
    and one coarse probability per label (8 channels for 7 labels), and a width-4 V-Net must still take them. The
    tiled input is cut at ``out_channels``: the same tensor as MONAI's when the counts divide, so are its layers,
    state-dict keys and outputs; otherwise the residual carries the first channels (the image comes first).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, act: tuple[str, dict] | str, bias: bool = False) -> None:
        divides = out_channels % in_channels == 0
        # When the counts divide, MONAI's own constructor runs unchanged: one convolution drawn from the random
        # stream, so a seed gives the same initial weights as before this class existed (a second draw shifted every
        # later layer's weights and moved the seeded tutorial runs). Otherwise 1 passes MONAI's check and the
        # convolution is replaced by one that takes every input channel.
        super().__init__(spatial_dims, in_channels if divides else 1, out_channels, act, bias=bias)
        if not divides:
            self.in_channels = in_channels
            self.conv_block = Convolution(spatial_dims, in_channels, out_channels, kernel_size=5, act=None, norm="batch", bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)``."""
        out = self.conv_block(x)
        repeats = (self.out_channels + self.in_channels - 1) // self.in_channels
        tiled = x.repeat([1, repeats, 1, 1, 1][: self.spatial_dims + 2])[:, : self.out_channels]
        return self.act_function(torch.add(out, tiled))


class VNet(monai_vnet.VNet):
    """MONAI ``VNet`` whose base width is a parameter (MONAI's network when ``width=16``).

    Args:
        spatial_dims: 2 or 3.
        in_channels: input channels; the input is tiled to ``width`` channels for the first residual
            connection (MONAI's rule, which needs ``width`` to be a multiple of it; here any width: the tiling is
            cut at ``width`` channels, :class:`TiledInputTransition`).
        out_channels: output channels (number of labels including background).
        width: channels of the first stage; stages have ``width * (1, 2, 4, 8, 16)``.
        act: activation, as MONAI's ``VNet``.
        dropout_prob_down: as MONAI's ``VNet``.
        dropout_prob_up: ``(up-path rate, skip-connection rate)`` as MONAI's ``VNet``, except that the
            skip rate applies to all four up transitions (MONAI fixes the two finest at 0.5).
        dropout_dim: as MONAI's ``VNet``.
        bias: as MONAI's ``VNet``.
        channels_last: keep weights and activations in ``channels_last`` memory format (same
            values, faster on CPU for narrow widths; measured neutral at width 16).
        kernel_size: edge of every convolution MONAI builds 5x5x5 (the paper's; :func:`replace_kernels`): 3 is
            nnU-Net's, 2.5x cheaper a training step at width 4 on a CPU.
        norm: ``"batch"`` (MONAI's, the paper's), ``"instance"`` (nnU-Net's: statistics of each
            sample and channel, the same in training and inference) or ``"group"`` (groups of
            :data:`GROUP_SIZE` channels). Batch norm's running statistics are gathered on
            training patches and applied to whole volumes in eval mode; see :data:`NORMS`.

    Input ``(B, in_channels, *spatial)`` with every spatial size divisible by 16
    (wrap in :class:`PadToMultiple` for any size); output ``(B, out_channels, *spatial)`` logits.
    """

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        out_channels: int = 2,
        width: int = 16,
        act: tuple[str, dict] | str = ("elu", {"inplace": True}),
        dropout_prob_down: float | None = 0.5,
        dropout_prob_up: tuple[float | None, float] = (0.5, 0.5),
        dropout_dim: int = 3,
        bias: bool = False,
        channels_last: bool = True,
        norm: str = "batch",
        kernel_size: int = 5,
    ) -> None:
        torch.nn.Module.__init__(self)  # MONAI's __init__ hard-codes the widths: build the same blocks here
        # what a trained model's record (medseg.model_record) stores to rebuild exactly this network
        self.init_config = {
            "_target_": f"{type(self).__module__}.{type(self).__qualname__}",
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "out_channels": out_channels,
            "width": width,
            "act": list(act) if isinstance(act, tuple) else act,
            "dropout_prob_down": dropout_prob_down,
            "dropout_prob_up": list(dropout_prob_up),
            "dropout_dim": dropout_dim,
            "bias": bias,
            "channels_last": channels_last,
            "norm": norm,
            "kernel_size": kernel_size,
        }
        if spatial_dims not in (2, 3):
            raise ValueError(f"VNet: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if width < 1 or in_channels < 1:
            raise ValueError(f"VNet: width={width} and in_channels={in_channels} must be positive.")
        w, M = width, monai_vnet
        self.width, self.in_channels, self.out_channels = width, in_channels, out_channels
        self.in_tr = TiledInputTransition(spatial_dims, in_channels, w, act, bias=bias)
        self.down_tr32 = M.DownTransition(spatial_dims, w, 1, act, dropout_dim=dropout_dim, bias=bias)
        self.down_tr64 = M.DownTransition(spatial_dims, 2 * w, 2, act, dropout_dim=dropout_dim, bias=bias)
        self.down_tr128 = M.DownTransition(spatial_dims, 4 * w, 3, act, dropout_prob=dropout_prob_down, dropout_dim=dropout_dim, bias=bias)
        self.down_tr256 = M.DownTransition(spatial_dims, 8 * w, 2, act, dropout_prob=dropout_prob_down, dropout_dim=dropout_dim, bias=bias)
        self.up_tr256 = M.UpTransition(spatial_dims, 16 * w, 16 * w, 2, act, dropout_prob=dropout_prob_up, dropout_dim=dropout_dim)
        self.up_tr128 = M.UpTransition(spatial_dims, 16 * w, 8 * w, 2, act, dropout_prob=dropout_prob_up, dropout_dim=dropout_dim)
        # MONAI builds the two finest up transitions with its default skip dropout (None, 0.5) whatever
        # dropout_prob_up says, so a "no dropout" config still dropped half of the full-resolution skip
        # features in training; here dropout_prob_up's skip rate applies to every level (0.5 by default, as MONAI)
        skip_only = (None, dropout_prob_up[1])
        self.up_tr64 = M.UpTransition(spatial_dims, 8 * w, 4 * w, 1, act, dropout_prob=skip_only, dropout_dim=dropout_dim)
        self.up_tr32 = M.UpTransition(spatial_dims, 4 * w, 2 * w, 1, act, dropout_prob=skip_only, dropout_dim=dropout_dim)
        self.out_tr = M.OutputTransition(spatial_dims, 2 * w, out_channels, act, bias=bias)
        self.norm = replace_norms(self, norm)
        self.kernel_size = replace_kernels(self, kernel_size)
        self.channels_last = channels_last
        if channels_last:
            self.to(memory_format=_memory_format(spatial_dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` -> ``(B, out_channels, *spatial)`` logits.

        MONAI's forward with the layout switch: written out rather than calling ``super()``,
        which TorchScript (``ckpt_export``) cannot compile.
        """
        if self.channels_last:
            # inline, not _memory_format(): TorchScript cannot compile a function returning a memory format
            x = x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
        out16 = self.in_tr(x)
        out32 = self.down_tr32(out16)
        out64 = self.down_tr64(out32)
        out128 = self.down_tr128(out64)
        out256 = self.down_tr256(out128)
        x = self.up_tr256(out256, out128)
        x = self.up_tr128(x, out64)
        x = self.up_tr64(x, out32)
        x = self.up_tr32(x, out16)
        return self.out_tr(x)


#: V-Net normalisation choices. Measured (``benchmarks/medseg_recipe.py``, bundle README): a width-4
#: V-Net with batch norm trained on class-balanced 32^3 patches scored Dice 0.76 on its training patches
#: and 0.06 on the same volume through ``medseg infer`` (running statistics of foreground-rich patches
#: applied to whole volumes), and its validation Dice swung 0.91 -> 0.00 -> 0.92; instance norm has no
#: running statistics, so training and inference compute the same function.
NORMS = ("batch", "instance", "group")
#: channels per group for ``norm="group"``
GROUP_SIZE = 4


def replace_norms(network: torch.nn.Module, norm: str) -> str:
    """Swap every batch norm of ``network`` for ``norm`` in place (affine, no running statistics); returns ``norm``.

    MONAI's V-Net blocks hard-code ``Norm.BATCH``; rebuilding them would copy MONAI's code, so the
    layers are replaced after construction. ``"batch"`` leaves the network as built.
    """
    if norm not in NORMS:
        raise ValueError(f"VNet: norm={norm!r} is invalid; expected one of {NORMS}.")
    if norm == "batch":
        return norm
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                setattr(parent, name, _norm_layer(norm, child.num_features))
    return norm


def replace_kernels(network: torch.nn.Module, kernel_size: int) -> int:
    """Swap every 5x5x5 (5x5) convolution of ``network`` for a ``kernel_size`` one in place ("same" padding, the same
    channels and bias); returns ``kernel_size``. 5 leaves the network as built (MONAI's layers, random stream and
    state-dict shapes).

    MONAI's V-Net blocks hard-code ``kernel_size=5``, so, as with the norms, the layers are replaced after
    construction rather than MONAI's blocks copied. Measured (``benchmarks/medseg_training.py``): one width-4 training
    step of 2 x 32^3 patches at one thread 0.30 s with 5^3 kernels, 0.12 s with 3^3; the full-resolution convolutions'
    backward passes are most of it.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"VNet: kernel_size must be an odd positive integer, got {kernel_size}.")
    if kernel_size == 5:
        return kernel_size
    for parent in list(network.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.modules.conv._ConvNd) and not child.transposed and set(child.kernel_size) == {5}:
                conv = type(child)(
                    child.in_channels, child.out_channels, kernel_size, padding=kernel_size // 2, bias=child.bias is not None
                )
                setattr(parent, name, conv)
    return kernel_size


def _norm_layer(norm: str, channels: int) -> torch.nn.Module:
    # instance norm as GroupNorm with one channel per group: the same function (tested against
    # InstanceNorm3d), but GroupNorm keeps channels_last_3d while InstanceNorm3d returns the default
    # layout, which costs the next convolution a conversion (w4 training step 0.23 -> 0.16 s)
    return torch.nn.GroupNorm(max(1, channels // GROUP_SIZE) if norm == "group" else channels, channels)


def _memory_format(spatial_dims: int) -> torch.memory_format:
    return torch.channels_last_3d if spatial_dims == 3 else torch.channels_last


def fold_batch_norm(network: torch.nn.Module) -> torch.nn.Module:
    """An eval-mode copy of a (MONAI or medact) V-Net with every batch norm folded into its convolution.

    In eval mode ``BN(conv(x)) = conv'(x)`` with ``w' = w * g / sqrt(v + eps)`` and
    ``b' = (b - m) * g / sqrt(v + eps) + beta`` (PyTorch's ``fuse_conv_bn_eval``): one pass over
    each activation fewer. The input network is left untouched (it may still be trained).
    Outputs agree with the original to float rounding (tested to 1e-5). Instance and group norms
    have no fixed statistics and are kept as they are.
    """
    folded = copy.deepcopy(network).eval()
    for module in folded.modules():
        if isinstance(module, Convolution) and isinstance(getattr(module.adn, "N", None), torch.nn.modules.batchnorm._BatchNorm):
            module.conv = fuse_conv_bn_eval(module.conv, module.adn.N)
            module.adn.N = torch.nn.Identity()
        elif isinstance(module, (monai_vnet.DownTransition, monai_vnet.UpTransition)) and isinstance(
            module.bn1, torch.nn.modules.batchnorm._BatchNorm
        ):
            name = "down_conv" if isinstance(module, monai_vnet.DownTransition) else "up_conv"
            conv = getattr(module, name)
            setattr(module, name, fuse_conv_bn_eval(conv, module.bn1, transpose=isinstance(conv, torch.nn.modules.conv._ConvTransposeNd)))
            module.bn1 = torch.nn.Identity()
    return folded


def with_initial_weights(network: torch.nn.Module, weights: str | None = None) -> torch.nn.Module:
    """``network`` with the weights of ``weights`` (a ``model.pt`` of the same architecture: fine-tuning, as MONAI Label's
    trainers start from the served model), or as initialised when ``None`` (the bundle's ``init_weights`` id)."""
    if weights is None:
        return network
    from shared.weights import load_weights

    return load_weights(network, weights)


class PadToMultiple(torch.nn.Module):
    """Pad the input's spatial sizes up to a multiple of ``k``, run ``network``, crop back.

    V-Net halves the size four times, so it needs multiples of 16. Padding is symmetric
    (the extra voxel on the high side) with zeros: after min-max normalisation the lower end of
    the range (air, for CT), but after the z-score of an MR bundle the body's *mean* intensity,
    not its background (which lies far below 0). The windows of the bundles are multiples of 16,
    so this padding only acts on windows of other sizes. The output is cropped to exactly the
    input's spatial shape.
    """

    def __init__(self, network: torch.nn.Module, k: int = 16) -> None:
        super().__init__()
        self.network, self.k = network, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = x.shape[2:]
        extra = [(-s) % self.k for s in spatial]
        if not any(extra):
            return self.network(x)
        pad: list[int] = []
        for e in reversed(extra):  # F.pad wants the last dimension first
            pad += [e // 2, e - e // 2]
        out = self.network(torch.nn.functional.pad(x, pad))
        crop = tuple(slice(e // 2, e // 2 + s) for e, s in zip(extra, spatial))
        return out[(slice(None), slice(None), *crop)]
