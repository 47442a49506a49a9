"""The action model family, chosen by a stable name (:data:`MODELS`).

Inputs by kind (``MODELS[name].input``):

- ``"clip"``: ``(B, 3, T, H, W)`` float in [0, 1] (20x64x64 in the papers);
- ``"features"``: ``(B, T, F)`` cached per-frame backbone features (``extract-features``);
- ``"sequence"``: ``(B, T, C)`` plain sequences (e.g. wearable sensors).

Every model returns ``(B, num_classes)`` logits (softmax is applied by the loss and by
``predict``). The convolution blocks follow paper 001 (3x3(x3) kernels, 16/32/64 channels,
2x2(x2) max pooling, dropout); batch normalisation after each convolution is our addition
(``batch_norm=False`` gives the paper's plain blocks) because it makes the small CPU
trainings converge in a few epochs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from action.models.recurrent import GRU, LSTM, AttentionPooling, RecurrentStack


def conv_stack(dims: int, in_channels: int, widths: Sequence[int], batch_norm: bool = True, dropout: float = 0.0) -> nn.Sequential:
    """``len(widths)`` blocks of Conv(3, pad 1) -> [BatchNorm] -> ReLU -> MaxPool(2), then dropout."""
    conv, norm, pool = (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d)
    layers: list[nn.Module] = []
    for width in widths:
        layers += [conv(in_channels, width, 3, padding=1, bias=not batch_norm)]
        layers += [norm(width)] if batch_norm else []
        layers += [nn.ReLU(inplace=True), pool(2)]
        in_channels = width
    layers += [nn.Dropout(dropout)] if dropout else []
    return nn.Sequential(*layers)


def _after_pools(size: int, pools: int) -> int:
    for _ in range(pools):
        size //= 2
    return size


class Clip3DRecurrent(nn.Module):
    """Paper 001: 3D CNN -> reshape to (B, T', C*H'*W') -> recurrent head (or none) -> dense.

    Args:
        frames: clip length T; each pooling halves it.
        size: frame size (H, W); each pooling halves H and W.
        head: ``"gru"``, ``"lstm"``, ``"gru_lstm"`` (GRU sequence -> LSTM last) or ``"none"``
            (flatten -> dense 128, the 3D-CNN-only baseline).
    """

    def __init__(
        self,
        num_classes: int,
        frames: int = 20,
        size: Sequence[int] = (64, 64),
        head: str = "gru",
        hidden: int = 128,
        widths: Sequence[int] = (16, 32, 64),
        dropout: float = 0.25,
        batch_norm: bool = True,
        reset_gate_mode: str = "after-multiplication",
    ) -> None:
        super().__init__()
        self.features = conv_stack(3, 3, widths, batch_norm, dropout)
        steps = _after_pools(frames, len(widths))
        if steps < 1:
            raise ValueError(f"{frames} frames are too few for {len(widths)} temporal poolings; use at least {2 ** len(widths)}.")
        per_step = widths[-1] * _after_pools(size[0], len(widths)) * _after_pools(size[1], len(widths))
        self.head_kind = head
        if head == "none":
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(per_step * steps, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout))
        else:
            self.head = recurrent_head(head, per_step, hidden, reset_gate_mode)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        maps = self.features(clip)  # (B, C, T', H', W')
        if self.head_kind == "none":
            return self.classifier(self.head(maps))
        steps = maps.permute(0, 2, 1, 3, 4).flatten(2)  # (B, T', C*H'*W')
        return self.classifier(self.head(steps))


HEADS = ("gru", "lstm", "bilstm", "gru_lstm", "deep_gru", "attention_gru")


def recurrent_head(kind: str, input_size: int, hidden: int, reset_gate_mode: str = "after-multiplication") -> nn.Module:
    """``(B, T, input_size)`` (+ optional ``(B, T)`` mask) -> ``(B, head_width(kind, hidden))``; kinds in :data:`HEADS`.

    ``gru_lstm``: GRU sequence -> LSTM last; ``deep_gru``: GRU sequence -> dropout -> GRU last;
    ``attention_gru``: GRU sequence -> attention pooling; ``bilstm``: bidirectional LSTM, last step.
    """
    if kind == "gru":
        return GRU(input_size, hidden, reset_gate_mode=reset_gate_mode, output_mode="last")
    if kind == "lstm":
        return LSTM(input_size, hidden, output_mode="last")
    if kind == "bilstm":
        return LSTM(input_size, hidden, output_mode="last", bidirectional=True)
    if kind == "gru_lstm":
        return RecurrentStack(
            GRU(input_size, hidden, reset_gate_mode=reset_gate_mode, output_mode="sequence"), LSTM(hidden, hidden, output_mode="last")
        )
    if kind == "deep_gru":
        return RecurrentStack(
            GRU(input_size, hidden, reset_gate_mode=reset_gate_mode, output_mode="sequence"),
            nn.Dropout(0.2),
            GRU(hidden, hidden, reset_gate_mode=reset_gate_mode, output_mode="last"),
        )
    if kind == "attention_gru":
        return RecurrentStack(GRU(input_size, hidden, reset_gate_mode=reset_gate_mode, output_mode="sequence"), AttentionPooling(hidden))
    raise ValueError(f"Unknown recurrent head {kind!r}; expected one of {HEADS}.")


def head_width(kind: str, hidden: int) -> int:
    """Features a :func:`recurrent_head` returns (a bidirectional layer doubles them)."""
    return 2 * hidden if kind == "bilstm" else hidden


class FrameEncoder(nn.Module):
    """Per-frame 2D CNN: ``(B, 3, T, H, W)`` -> ``(B, T, F)``.

    ``pooling="flatten"`` keeps the spatial map (paper 001's 2D baseline: F = 64*H/8*W/8);
    ``"average"`` pools it to F = widths[-1] (papers 000/003/004).
    """

    def __init__(
        self,
        size: Sequence[int] = (64, 64),
        widths: Sequence[int] = (16, 32, 64),
        pooling: str = "average",
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.cnn = conv_stack(2, 3, widths, batch_norm, dropout)
        self.pooling = pooling
        spatial = _after_pools(size[0], len(widths)) * _after_pools(size[1], len(widths))
        self.out_features = widths[-1] * (spatial if pooling == "flatten" else 1)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = clip.shape
        frames = clip.transpose(1, 2).reshape(b * t, c, h, w)
        maps = self.cnn(frames)
        per_frame = maps.flatten(1) if self.pooling == "flatten" else maps.mean(dim=(2, 3))
        return per_frame.reshape(b, t, -1)


class FrameRecurrent(nn.Module):
    """Per-frame CNN -> recurrent head (or attention / frame average) -> dense.

    ``head``: ``gru`` / ``lstm`` (last hidden state), ``attention_lstm`` (LSTM sequence ->
    attention pooling, paper 004) or ``average`` (mean of the per-frame features).
    """

    def __init__(
        self,
        num_classes: int,
        size: Sequence[int] = (64, 64),
        head: str = "gru",
        hidden: int = 128,
        widths: Sequence[int] = (16, 32, 64),
        pooling: str = "average",
        dropout: float = 0.25,
        batch_norm: bool = True,
        reset_gate_mode: str = "after-multiplication",
    ) -> None:
        super().__init__()
        self.encoder = FrameEncoder(size, widths, pooling, dropout, batch_norm)
        features = self.encoder.out_features
        self.head_kind = head
        if head == "attention_lstm":
            self.head = RecurrentStack(LSTM(features, hidden, output_mode="sequence"), AttentionPooling(hidden))
        elif head == "average":
            self.head, hidden = nn.Identity(), features
        else:
            self.head = recurrent_head(head, features, hidden, reset_gate_mode)
        self.classifier = nn.Linear(hidden, num_classes)

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        per_frame = self.encoder(clip)
        pooled = per_frame.mean(dim=1) if self.head_kind == "average" else self.head(per_frame)
        return self.classifier(pooled)


class FrameAverage(nn.Module):
    """Order-blind baseline: the clip's mean frame ``(B, 3, H, W)`` -> 2D CNN 16/32/64 -> flatten -> dense.

    Averaging the frames first makes the output invariant to frame order by construction,
    so a time-reversed video gets exactly the same prediction.
    """

    def __init__(
        self,
        num_classes: int,
        size: Sequence[int] = (64, 64),
        hidden: int = 128,
        widths: Sequence[int] = (16, 32, 64),
        dropout: float = 0.25,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        self.cnn = conv_stack(2, 3, widths, batch_norm, dropout)
        flat = widths[-1] * _after_pools(size[0], len(widths)) * _after_pools(size[1], len(widths))
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(hidden, num_classes)
        )

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.head(self.cnn(clip.mean(dim=2)))


class SequenceRecurrent(nn.Module):
    """``(B, T, C)`` features or sensor sequences -> recurrent head -> dropout -> dense (paper 002 with ``deep_gru``).

    ``forward(sequence, mask=None)``: ``mask`` ``(B, T)`` marks the real steps of padded
    unequal-length sequences (``shared.sequences``); without it every step is real.
    """

    def __init__(
        self,
        num_classes: int,
        in_features: int,
        head: str = "gru",
        hidden: int = 128,
        dropout: float = 0.25,
        reset_gate_mode: str = "after-multiplication",
    ) -> None:
        super().__init__()
        self.head = recurrent_head(head, in_features, hidden, reset_gate_mode)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_width(head, hidden), num_classes)

    def forward(self, sequence: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.classifier(self.dropout(self.head(sequence, mask)))


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One named model: its input kind, a builder and a one-line description (docs table)."""

    input: str
    build: Callable[..., nn.Module]
    description: str


def _clip3d(head: str) -> Callable[..., nn.Module]:
    return lambda num_classes, frames, size, **kw: Clip3DRecurrent(num_classes, frames, size, head=head, **kw)


def _frames(head: str, **fixed: Any) -> Callable[..., nn.Module]:
    return lambda num_classes, frames, size, **kw: FrameRecurrent(num_classes, size, head=head, **{**fixed, **kw})


def _sequence(head: str) -> Callable[..., nn.Module]:
    return lambda num_classes, in_features, **kw: SequenceRecurrent(num_classes, in_features, head=head, **kw)


MODELS: dict[str, ModelSpec] = {
    "cnn_gru": ModelSpec("clip", _frames("gru"), "per-frame 2D CNN (average-pooled) -> GRU -> FC (paper 000)"),
    "cnn_lstm": ModelSpec("clip", _frames("lstm"), "LRCN: per-frame 2D CNN -> LSTM -> FC (paper 003)"),
    "c3d_gru": ModelSpec("clip", _clip3d("gru"), "3D CNN 16/32/64 -> reshape -> GRU(128) -> dense (paper 001)"),
    "c3d": ModelSpec("clip", _clip3d("none"), "3D CNN 16/32/64 -> flatten -> dense (paper 001 baseline)"),
    "c3d_lstm": ModelSpec("clip", _clip3d("lstm"), "3D CNN -> LSTM(128) -> dense (paper 001 baseline)"),
    "gru_lstm": ModelSpec("clip", _clip3d("gru_lstm"), "3D CNN -> GRU(128) sequence -> LSTM(128) -> dense (paper 001 baseline)"),
    "cnn2d_gru": ModelSpec(
        "clip",
        _frames("gru", widths=(16, 32, 64), pooling="flatten"),
        "per-frame 2D CNN 16/32/64 (flattened) -> GRU(128) -> dense (paper 001 baseline)",
    ),
    "attention_lstm": ModelSpec(
        "clip", _frames("attention_lstm"), "per-frame 2D CNN -> LSTM sequence -> attention pooling -> FC (paper 004)"
    ),
    "frame_average": ModelSpec(
        "clip",
        lambda num_classes, frames, size, **kw: FrameAverage(num_classes, size, **kw),
        "mean frame -> 2D CNN -> dense (order-blind baseline)",
    ),
    "feature_gru": ModelSpec("features", _sequence("deep_gru"), "cached backbone features -> GRU sequence -> GRU last -> FC (paper 002)"),
    "gru": ModelSpec("sequence", _sequence("gru"), "plain sequences (B, T, C) of any length -> GRU -> FC"),
    "lstm": ModelSpec("sequence", _sequence("lstm"), "plain sequences of any length -> LSTM -> FC"),
    "bilstm": ModelSpec(
        "sequence", _sequence("bilstm"), "plain sequences of any length -> bidirectional LSTM -> FC (MATLAB's Japanese Vowels example)"
    ),
    "attention_gru": ModelSpec(
        "sequence", _sequence("attention_gru"), "plain sequences of any length -> GRU sequence -> attention pooling -> FC"
    ),
}


def build_model(
    name: str,
    num_classes: int,
    frames: int = 20,
    size: Sequence[int] = (64, 64),
    in_features: int | None = None,
    seed: int | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build model ``name`` of :data:`MODELS` for ``num_classes`` classes.

    Args:
        frames: clip length T for ``"clip"`` models.
        size: frame size (H, W) for ``"clip"`` models.
        in_features: F or C per time step for ``"features"`` / ``"sequence"`` models.
        seed: seed of the initial weights (``torch.manual_seed``; ``None``: the global generator as it is),
            so that the weights do not depend on what ran before (data reading, backbones).
        kwargs: model options (``hidden``, ``dropout``, ``reset_gate_mode``, ``batch_norm``, ...).
    """
    if name not in MODELS:
        raise ValueError(f"Unknown model {name!r}; expected one of {sorted(MODELS)}.")
    if seed is not None:
        torch.manual_seed(seed)
    spec = MODELS[name]
    if spec.input == "clip":
        return spec.build(num_classes, frames, tuple(size), **kwargs)
    if not in_features:
        raise ValueError(f"Model {name!r} reads {spec.input} and needs in_features (values per time step).")
    return spec.build(num_classes, in_features, **kwargs)
