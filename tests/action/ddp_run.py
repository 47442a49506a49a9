"""Two-process action training for tests/action/test_distributed.py: ``python ddp_run.py DATA OUT NPROC``.

Each rank records which videos it trained on per epoch and its final weights.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from ignite.engine import Events

from action.train import train_model
from action.video.dataset import Sampling
from shared.data import world
from shared.distributed import run_parallel


def train(local_rank: int, args: tuple[str, str]) -> None:
    data, out = Path(args[0]), Path(args[1])
    options = {"max_epochs": 2, "mini_batch_size": 4, "verbose": False, "initial_learn_rate": 0.003}
    trainer = train_model(data, out, "c3d_gru", options, inputs=Sampling(frames=8, size=(32, 32)))
    seen: dict[int, list[str]] = {}
    videos = trainer.data_loader.dataset.videos

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine) -> None:
        batch = engine.state.batch
        indices = [item["video"] for item in batch] if isinstance(batch, list) else batch["video"]
        seen.setdefault(engine.state.epoch, []).extend(videos[int(i)] for i in indices)

    trainer.run()
    rank = world()[1]
    torch.save(trainer.network.module.state_dict(), out.parent / f"rank{rank}_weights.pt")
    (out.parent / f"rank{rank}.json").write_text(json.dumps({"world": world()[0], "seen": seen}))


if __name__ == "__main__":
    run_parallel(train, (sys.argv[1], sys.argv[2]), int(sys.argv[3]))
