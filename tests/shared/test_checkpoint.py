import random
from pathlib import Path

import numpy as np
import pytest
import torch

from shared import checkpoint as ckpt
from shared.engine import build_trainer
from shared.options import TrainingOptions
from shared.weights import load_weights, save_weights
from tests.shared.conftest import TinyNet


def _train(tmp_path, train_data, resume=False, epochs=3):
    options = TrainingOptions(max_epochs=epochs, mini_batch_size=16, verbose=False, checkpoint_path=str(tmp_path / "ck"))
    trainer = build_trainer(TinyNet(), torch.nn.CrossEntropyLoss(), options, train_data, resume=resume)
    trainer.run()
    return trainer


def test_checkpoints_load_with_weights_only_and_keep_two(tmp_path, train_data):
    _train(tmp_path, train_data)
    found = ckpt.list_checkpoints(tmp_path / "ck")
    assert [it for it, _ in found] == [12, 8]
    state = torch.load(found[0][1], weights_only=True)
    assert {"network", "optimizer", "trainer", "rng", "history", "checkpointer"} <= set(state)
    assert state["trainer"]["iteration"] == 12
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["checkpoint_12.pt", "checkpoint_8.pt"]


def test_corrupt_newest_checkpoint_falls_back_loudly(tmp_path, train_data):
    _train(tmp_path, train_data)
    newest = tmp_path / "ck" / "checkpoint_12.pt"
    newest.write_bytes(newest.read_bytes()[:300])  # truncated, as by a dying disk
    with pytest.warns(RuntimeWarning, match=r"checkpoint_12\.pt cannot be read.*FALLING BACK"):
        path, state = ckpt.load_latest_checkpoint(tmp_path / "ck")
    assert path.name == "checkpoint_8.pt" and state["trainer"]["iteration"] == 8
    with pytest.warns(RuntimeWarning, match="FALLING BACK"):
        resumed = _train(tmp_path, train_data, resume=True)
    assert resumed.state.iteration == 12  # the lost epoch was trained again


def test_no_readable_checkpoint_is_an_error(tmp_path):
    folder = tmp_path / "ck"
    folder.mkdir()
    (folder / "checkpoint_3.pt").write_bytes(b"not a checkpoint")
    with pytest.warns(RuntimeWarning), pytest.raises(ckpt.CheckpointError, match=r"No readable checkpoint in .*ck"):
        ckpt.load_latest_checkpoint(folder)


def test_foreign_files_are_refused(tmp_path):
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"list\.pt holds a list"):
        ckpt.read_checkpoint(tmp_path / "list.pt")
    torch.save({"network": {}}, tmp_path / "partial.pt")
    with pytest.raises(ckpt.CheckpointError, match=r"lacks \['optimizer', 'trainer', 'rng'\]"):
        ckpt.read_checkpoint(tmp_path / "partial.pt")


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pickled_code_is_never_executed(tmp_path):
    torch.save({"network": _Evil(), "optimizer": {}, "trainer": {}, "rng": {}}, tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        ckpt.read_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(ckpt.CheckpointError, match="cannot be read"):
        load_weights(TinyNet(), tmp_path / "evil.pt")


def test_failed_save_keeps_previous_files_and_leaves_no_partial(tmp_path, monkeypatch):
    saver = ckpt.AtomicDiskSaver(tmp_path)
    saver({"a": torch.ones(2)}, "checkpoint_1.pt")
    saver.remove("checkpoint_1.pt")  # Ignite asks to delete the old file before writing the new one

    def explode(obj, f, **kwargs):
        Path(f).write_bytes(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        saver({"a": torch.zeros(2)}, "checkpoint_2.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_1.pt"]  # no partial file anywhere
    monkeypatch.undo()
    saver({"a": torch.zeros(2)}, "checkpoint_3.pt")  # the deferred removal happens after a success
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_3.pt"]


def test_rng_state_round_trip():
    gen = torch.Generator().manual_seed(5)
    rng = ckpt.RNGState({"loader": gen})
    # numpy's legacy global RNG on purpose: it is the state that RNGState saves and restores
    torch.manual_seed(1), np.random.seed(2), random.seed(3)  # noqa: NPY002
    np.random.normal()  # noqa: NPY002 - leaves a cached gaussian in numpy's state
    state = rng.state_dict()
    expected = (torch.rand(3), np.random.normal(size=3), random.random(), torch.rand(2, generator=gen))  # noqa: NPY002
    torch.manual_seed(7), np.random.seed(7), random.seed(7), gen.manual_seed(7)  # noqa: NPY002
    rng.load_state_dict(state)
    got = (torch.rand(3), np.random.normal(size=3), random.random(), torch.rand(2, generator=gen))  # noqa: NPY002
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    torch.testing.assert_close(got[3], expected[3])


def test_save_and_load_weights(tmp_path):
    net = TinyNet()
    save_weights(net, tmp_path / "model.pt")
    other = load_weights(TinyNet(), tmp_path / "model.pt")
    torch.testing.assert_close(other.head.weight, net.head.weight)
    with pytest.raises(FileNotFoundError, match=r"Model weights not found: .*nope\.pt"):
        load_weights(TinyNet(), tmp_path / "nope.pt")
