"""shared.sequences: MATLAB's SequenceLength / SequencePaddingDirection / SequencePaddingValue on mini-batches."""

from __future__ import annotations

import pytest
import torch

from shared.options import OptionError, TrainingOptions
from shared.sequences import SequenceCollate, move_padding_to_end, pad_sequences, prepare_sequence_batch


def _steps(*lengths: int) -> list[torch.Tensor]:
    """Sequences whose step t holds t + 1 (so positions are visible), one channel."""
    return [torch.arange(1, n + 1, dtype=torch.float32)[:, None] for n in lengths]


def test_longest_pads_right_with_the_padding_value() -> None:
    batch, mask = pad_sequences(_steps(2, 4), "longest", "right", value=-7)
    assert batch[..., 0].tolist() == [[1, 2, -7, -7], [1, 2, 3, 4]]
    assert mask.tolist() == [[True, True, False, False], [True] * 4]


def test_left_padding_puts_the_real_steps_last() -> None:
    batch, mask = pad_sequences(_steps(2, 4), "longest", "left")
    assert batch[..., 0].tolist() == [[0, 0, 1, 2], [1, 2, 3, 4]]
    assert mask.tolist() == [[False, False, True, True], [True] * 4]


@pytest.mark.parametrize(("direction", "kept"), [("right", [1, 2]), ("left", [3, 4])])
def test_shortest_truncates_on_the_padding_side(direction: str, kept: list[int]) -> None:
    batch, mask = pad_sequences(_steps(2, 4), "shortest", direction)
    assert batch[1, :, 0].tolist() == kept and mask.all()


def test_a_number_pads_to_its_next_multiple() -> None:
    batch, _ = pad_sequences(_steps(3, 5), 4)
    assert batch.shape == (2, 8, 1)


def test_move_padding_to_end_undoes_left_padding() -> None:
    batch, mask = pad_sequences(_steps(2, 4, 3), "longest", "left")
    aligned, aligned_mask = move_padding_to_end(batch, mask)
    right, right_mask = pad_sequences(_steps(2, 4, 3), "longest", "right")
    torch.testing.assert_close(aligned * aligned_mask[..., None], right)
    assert torch.equal(aligned_mask, right_mask)


def test_collate_and_prepare_batch_carry_the_mask_to_the_network() -> None:
    samples = [{"image": s, "label": i, "video": i} for i, s in enumerate(_steps(3, 1))]
    batch = SequenceCollate.from_options(TrainingOptions(sequence_padding_direction="left"))(samples)
    assert batch["image"].shape == (2, 3, 1) and batch["label"].tolist() == [0, 1]
    _, label, args, kwargs = prepare_sequence_batch(batch, "cpu")
    assert args == () and kwargs["mask"].tolist() == [[True] * 3, [False, False, True]] and label.tolist() == [0, 1]


def test_options_have_matlabs_sequence_defaults_and_names() -> None:
    opts = TrainingOptions()
    assert (opts.sequence_length, opts.sequence_padding_direction, opts.sequence_padding_value) == ("longest", "right", 0.0)
    opts = TrainingOptions.from_dict({"SequenceLength": "Shortest", "SequencePaddingDirection": "left", "SequencePaddingValue": -1})
    assert (opts.sequence_length, opts.sequence_padding_direction, opts.sequence_padding_value) == ("shortest", "left", -1.0)
    assert TrainingOptions.from_dict({"SequenceLength": 16}).sequence_length == 16


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("sequence_length", "medium", "'longest', 'shortest' or a positive integer"),
        ("sequence_length", 0, "'longest', 'shortest' or a positive integer"),
        ("sequence_padding_direction", "up", "'right', 'left'"),
        ("sequence_padding_value", float("nan"), "a finite number"),
    ],
)
def test_bad_sequence_options_are_named(name: str, value: object, expected: str) -> None:
    with pytest.raises(OptionError, match=rf"{name}=.* is invalid; expected .*{expected}"):
        TrainingOptions(**{name: value})


def test_the_padding_mover_is_named_for_what_it_does() -> None:
    """Real steps to the front, padding to the end: ``move_padding_to_end`` (it was called right_align)."""
    import shared.sequences as sequences

    assert not hasattr(sequences, "right_align")
    batch, mask = pad_sequences(_steps(1, 3), "longest", "left")  # row 0: [pad, pad, 1], padding first
    moved, moved_mask = move_padding_to_end(batch, mask)
    assert moved_mask.tolist() == [[True, False, False], [True, True, True]] and moved[0, 0, 0] == 1  # padding now last
