"""MATLAB's sequence options for mini-batches of unequal-length sequences, and the mask that keeps padding harmless.

``trainingOptions`` names, with MATLAB's defaults (``shared.options``):

- ``SequenceLength``: ``"longest"`` (pad each mini-batch to its longest sequence), ``"shortest"``
  (truncate to its shortest: data is discarded) or a positive integer N (pad to the next multiple
  of N; MATLAB also splits such batches into chunks of N for truncated back-propagation through
  time, which medact does not: gradients flow through whole sequences);
- ``SequencePaddingDirection``: ``"right"`` (pad / truncate at the end) or ``"left"`` (at the start);
- ``SequencePaddingValue``: the value padded steps hold (0).

Each batch carries a ``"mask"`` ``(B, T)`` of real steps; the recurrent and attention layers of
``action.models.recurrent`` read it (packed sequences, frozen states, masked attention), so a sequence gets
the same logits alone as padded in a batch with longer ones, whatever the padding direction and value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch

PADDING_DIRECTIONS = ("right", "left")
SEQUENCE_LENGTHS = ("longest", "shortest")


def padded_length(lengths: Sequence[int], sequence_length: str | int) -> int:
    """Time steps of the padded batch for ``sequence_length`` (see the module docstring)."""
    if sequence_length == "longest":
        return max(lengths)
    if sequence_length == "shortest":
        return min(lengths)
    return math.ceil(max(lengths) / int(sequence_length)) * int(sequence_length)


def pad_sequences(
    sequences: Sequence[torch.Tensor], sequence_length: str | int = "longest", direction: str = "right", value: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``(T_i, C)`` sequences into ``(B, T, C)`` plus the ``(B, T)`` mask of real steps.

    Longer sequences are truncated at the padding side (``"shortest"``): the end for ``"right"``,
    the start for ``"left"``, as MATLAB does.
    """
    if direction not in PADDING_DIRECTIONS:
        raise ValueError(f"sequence_padding_direction={direction!r}; expected one of {PADDING_DIRECTIONS}.")
    steps = padded_length([len(s) for s in sequences], sequence_length)
    first = sequences[0]
    batch = first.new_full((len(sequences), steps, *first.shape[1:]), float(value))
    mask = torch.zeros(len(sequences), steps, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        kept = sequence[:steps] if direction == "right" else sequence[max(0, len(sequence) - steps) :]
        span = slice(0, len(kept)) if direction == "right" else slice(steps - len(kept), steps)
        batch[row, span] = kept
        mask[row, span] = True
    return batch, mask


class SequenceCollate:
    """``collate_fn`` for samples ``{"image": (T_i, C), "label": int, ...}``: pads ``"image"``, adds ``"mask"``.

    Args:
        sequence_length: ``"longest"``, ``"shortest"`` or a positive integer (MATLAB ``SequenceLength``).
        direction: ``"right"`` or ``"left"`` (MATLAB ``SequencePaddingDirection``).
        value: padding value (MATLAB ``SequencePaddingValue``).

    Other keys are collated as PyTorch does (labels and indices become tensors).
    """

    def __init__(self, sequence_length: str | int = "longest", direction: str = "right", value: float = 0.0) -> None:
        self.sequence_length, self.direction, self.value = sequence_length, direction, value

    @classmethod
    def from_options(cls, options: Any) -> SequenceCollate:
        """The collate of a :class:`~shared.options.TrainingOptions`."""
        return cls(options.sequence_length, options.sequence_padding_direction, options.sequence_padding_value)

    def __call__(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        images, mask = pad_sequences([torch.as_tensor(s["image"]) for s in samples], self.sequence_length, self.direction, self.value)
        rest = torch.utils.data.default_collate([{k: v for k, v in s.items() if k != "image"} for s in samples])
        return {**rest, "image": images, "mask": mask}


def prepare_sequence_batch(batchdata: Mapping[str, Any], device: Any = None, non_blocking: bool = False, **kwargs: Any) -> tuple:
    """MONAI ``prepare_batch`` hook: ``(image, label, (), {"mask": mask})``, so the engine calls ``network(image, mask=mask)``."""
    move = {"device": device, "non_blocking": non_blocking, **kwargs}
    label = batchdata.get("label")
    label = label.to(**move) if isinstance(label, torch.Tensor) else None
    return batchdata["image"].to(**move), label, (), {"mask": batchdata["mask"].to(device=device, non_blocking=non_blocking)}


def move_padding_to_end(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each sequence's padding to the end (its real steps to the front): ``(B, T, ...)``, mask ``(B, T)`` ->
    right-padded copies, as packed recurrent layers need them.

    Left-padded rows (mask starting with padding) are rolled; real steps must be contiguous. (Once named
    ``right_align``, which said the opposite of what it does.)
    """
    lengths = mask.sum(dim=1)
    steps = x.shape[1]
    shift = torch.where(mask[:, 0], torch.zeros_like(lengths), steps - lengths)  # left padding: skip the pad
    index = (torch.arange(steps, device=x.device)[None] + shift[:, None]) % steps
    aligned = torch.gather(x, 1, index.view(*index.shape, *([1] * (x.dim() - 2))).expand_as(x))
    return aligned, torch.arange(steps, device=x.device)[None] < lengths[:, None]
