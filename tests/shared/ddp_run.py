"""Two-process training run for tests/shared/test_distributed.py: ``python ddp_run.py OUT NPROC [EPOCHS [resume]]``.

Each rank records the dataset indices of every batch it trained on and its final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import ignite.distributed as idist
import numpy as np
import torch
from ignite.engine import Events

from shared.data import world
from shared.demo import SequenceClassifier, make_sequences
from shared.distributed import run_parallel
from shared.engine import build_trainer
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions


class Indexed(torch.utils.data.Dataset):
    """``{"image": (C, T), "label", "index"}`` samples of the engine demo's sequences."""

    def __init__(self, n: int, seed: int) -> None:
        self.x, self.y = make_sequences(n, seed=seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        return {"image": torch.from_numpy(self.x[i]), "label": int(self.y[i]), "index": i}


def options(out: Path, epochs: int) -> TrainingOptions:
    return TrainingOptions(
        max_epochs=epochs,
        mini_batch_size=8,
        shuffle="every-epoch",
        validation_frequency=5,
        verbose=False,
        checkpoint_path=str(out / "checkpoints"),
        plots="training-progress",
    )


def build(out: Path, epochs: int, resume: bool = False):
    torch.manual_seed(0)
    metrics = {"accuracy": confusion_metric("accuracy", 4), "f1": confusion_metric("f1", 4)}
    return build_trainer(
        SequenceClassifier(3, 4),
        torch.nn.CrossEntropyLoss(),
        options(out, epochs),
        Indexed(96, 1),
        Indexed(30, 2),
        metrics=metrics,
        key_metric="accuracy",
        output_dir=out,
        resume=resume,
    )


def train(local_rank: int, args: tuple[Path, int, bool]) -> None:
    out, epochs, resume = args
    trainer = build(out, epochs=epochs, resume=resume)
    seen: dict[int, list[int]] = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine) -> None:
        batch = engine.state.batch  # MONAI decollates the batch into per-sample dicts
        indices = [item["index"] for item in batch] if isinstance(batch, list) else batch["index"]
        seen.setdefault(engine.state.epoch, []).extend(int(i) for i in indices)

    trainer.run()
    size, rank = world()
    module = trainer.network.module if hasattr(trainer.network, "module") else trainer.network
    torch.save(module.state_dict(), out / f"rank{rank}_weights.pt")
    result = {"world": size, "seen": seen, "val": {k: float(np.asarray(v)) for k, v in trainer.evaluator.state.metrics.items()}}
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    idist.barrier()


if __name__ == "__main__":  # OUT NPROC [EPOCHS [resume]]
    target, nproc = Path(sys.argv[1]), int(sys.argv[2])
    job = (target, int(sys.argv[3]) if len(sys.argv) > 3 else 2, len(sys.argv) > 4 and sys.argv[4] == "resume")
    if nproc > 1:
        run_parallel(train, job, nproc)
    else:
        train(0, job)
