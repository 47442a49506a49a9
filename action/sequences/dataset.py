"""Labelled sequences of any length (wearable sensors, speech features) for the recurrent models.

Files are read by :mod:`action.sequences.readers` (``.npz``, ``.csv``, ``.mat``, ``.ts``). Each
recording is normalised per channel as MATLAB's ``sequenceInputLayer(Normalization=...)`` does,
with statistics of the *training* recordings only (:class:`SequenceNormalization`, stored in
``action_model.json`` so evaluate, predict and serve apply the same numbers):

- ``"zscore"`` (the default for sequences): ``(x - mean) / sd``;
- ``"zerocenter"``: ``x - mean``;
- ``"rescale-symmetric"``: ``[min, max]`` -> ``[-1, 1]``;
- ``"rescale-zero-one"``: ``[min, max]`` -> ``[0, 1]`` (``shared.MinMax``, the video pixels' transform);
- ``"none"``.

The default was chosen on real recordings (``benchmarks/action_sequences.py``, docs/action.md): a GRU
on min-max-rescaled accelerometer channels stayed at chance, because one spike stretches a channel's
range and squeezes the rest of its values into a sliver of [0, 1]; z-scored channels trained.
Samples are ``{"image": (T_i, C) float32, "label": int, "video": index}``; batches are padded by
:class:`shared.sequences.SequenceCollate` per the options' ``sequence_length`` and padding direction.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import numpy as np
import torch

from action.sequences.readers import SEQUENCE_SUFFIXES, Sequences, read_sequences
from shared.rescale import MinMax

logger = logging.getLogger(__name__)
NORMALIZATIONS = ("zscore", "zerocenter", "rescale-symmetric", "rescale-zero-one", "none")
DEFAULT_NORMALIZATION = "zscore"

__all__ = [
    "NORMALIZATIONS",
    "SEQUENCE_SUFFIXES",
    "SequenceDataset",
    "SequenceInput",
    "SequenceNormalization",
    "Sequences",
    "read_sequences",
]


@dataclasses.dataclass
class SequenceNormalization:
    """Per-channel input normalisation with fixed (training) statistics: ``(T, C)`` -> ``(T, C)`` float32.

    Attributes:
        kind: one of :data:`NORMALIZATIONS`.
        mean, sd: per-channel mean and standard deviation (``zscore``, ``zerocenter``).
        low, high: per-channel minimum and maximum (the two ``rescale`` kinds); test values outside
            them are clipped, as MATLAB's ``rescale`` with ``InputMin``/``InputMax``.
    """

    kind: str = DEFAULT_NORMALIZATION
    mean: list[float] | None = None
    sd: list[float] | None = None
    low: list[float] | None = None
    high: list[float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.kind!r} is invalid; expected one of {NORMALIZATIONS}.")
        if self.kind.startswith("rescale"):
            low, high = (np.asarray(v, dtype=np.float32).reshape(1, -1) for v in (self.low, self.high))
            # (1, C) bounds broadcast along time; a constant channel maps to the range's lower end
            self._rescale = MinMax(
                -1.0 if self.kind == "rescale-symmetric" else 0.0, 1.0, input_min=low, input_max=np.where(high > low, high, low + 1.0)
            )

    @classmethod
    def fit(cls, kind: str, recordings: list[np.ndarray]) -> SequenceNormalization:
        """Statistics of ``recordings`` (each ``(T_i, C)``) over all their steps, per channel."""
        steps = np.concatenate(recordings).astype(np.float64)
        sd = steps.std(axis=0)
        if kind == "zscore" and (sd == 0).any():
            logger.warning("Channels %s are constant in the training data; z-score divides them by 1.", np.flatnonzero(sd == 0).tolist())
        return cls(
            kind, steps.mean(axis=0).tolist(), np.where(sd > 0, sd, 1.0).tolist(), steps.min(axis=0).tolist(), steps.max(axis=0).tolist()
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, legacy_window: list[list[float]] | None = None) -> SequenceNormalization:
        """From ``action_model.json`` (models saved before this existed stored a min-max ``window``)."""
        if data:
            return cls(**data)
        if legacy_window is not None:
            return cls("rescale-zero-one", low=list(legacy_window[0]), high=list(legacy_window[1]))
        return cls("none")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.kind == "none":
            return np.asarray(x, dtype=np.float32)
        if self.kind.startswith("rescale"):
            return np.asarray(self._rescale(np.asarray(x, dtype=np.float32)), dtype=np.float32)
        centred = np.asarray(x, dtype=np.float64) - np.asarray(self.mean)
        return (centred / np.asarray(self.sd) if self.kind == "zscore" else centred).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SequenceInput:
    """How sequence files are read and prepared for training.

    Attributes:
        normalization: one of :data:`NORMALIZATIONS` (MATLAB ``sequenceInputLayer`` ``Normalization``).
        sort_by_length: order training recordings by length (see :class:`SequenceDataset`).
        x_var: ``.mat`` variable holding the cell array of ``C x T`` recordings (default: found by shape).
        y_var: ``.mat`` variable holding the labels (default: found by shape).
    """

    normalization: str = DEFAULT_NORMALIZATION
    sort_by_length: bool = False
    x_var: str | None = None
    y_var: str | None = None

    def __post_init__(self) -> None:
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization={self.normalization!r} is invalid; expected one of {NORMALIZATIONS}.")


class SequenceDataset(torch.utils.data.Dataset):
    """``{"image": (T_i, C) float32, "label": int, "video": index}``, normalised with fixed statistics.

    Args:
        sequences: the recordings.
        normalization: a fitted :class:`SequenceNormalization`.
        sort_by_length: order the recordings by length (shortest first), as MATLAB's sequence
            example does, so mini-batches hold similar lengths and need little padding (use it
            with ``shuffle="never"``).
    """

    def __init__(self, sequences: Sequences, normalization: SequenceNormalization, sort_by_length: bool = False) -> None:
        self.order = np.argsort(sequences.lengths, kind="stable") if sort_by_length else np.arange(len(sequences.y))
        self.sequences = sequences
        self.normalization = normalization

    def __len__(self) -> int:
        return len(self.sequences.y)

    def __getitem__(self, index: int) -> dict:
        i = int(self.order[index])
        return {"image": torch.from_numpy(self.normalization(self.sequences.x[i])), "label": int(self.sequences.y[i]), "video": i}

    @property
    def labels(self) -> np.ndarray:
        return self.sequences.y[self.order]
