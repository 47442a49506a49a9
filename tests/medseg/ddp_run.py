"""The V-Net bundle's train.json on 2 processes (or evaluated in 1) for tests/medseg/test_distributed.py.

``python ddp_run.py train BUNDLE DATA 2``: each rank records the cases of its patches per epoch,
its final weights and the (reduced) validation metrics. ``python ddp_run.py evaluate BUNDLE DATA
WEIGHTS``: one process runs the same config's evaluator with ``WEIGHTS``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from ignite.engine import Events
from monai.bundle import ConfigWorkflow

from shared.data import world
from shared.distributed import run_parallel

# last-iteration weights: the ones the final validation evaluated (best-validation would restore earlier ones)
TINY = {
    "width": 4,
    "options#validation_frequency": 2,
    "cache": "none",
    "options#verbose": False,
    "options#max_epochs": 2,
    "options#output_network": "last-iteration",
}


def _trainer(bundle: str, data: str):
    workflow = ConfigWorkflow(config_file=f"{bundle}/configs/train.json", workflow_type=None, bundle_root=bundle, dataset_dir=data, **TINY)
    workflow.initialize()
    return workflow.parser.get_parsed_content("trainer")


def _metrics(engine) -> dict[str, float]:
    return {k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, (int, float)) or getattr(v, "numel", lambda: 2)() == 1}


def train(local_rank: int, args: tuple[str, str]) -> None:
    bundle, data = args
    trainer = _trainer(bundle, data)
    seen: dict[int, list[str]] = {}

    @trainer.on(Events.ITERATION_COMPLETED)
    def _record(engine) -> None:
        items = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        for item in items:
            names = item["image"].meta["filename_or_obj"]
            seen.setdefault(engine.state.epoch, []).extend([names] if isinstance(names, str) else list(names))

    trainer.run()
    rank = world()[1]
    out = Path(bundle).parent
    torch.save(trainer.network.module.state_dict(), out / f"rank{rank}_weights.pt")
    (out / f"rank{rank}.json").write_text(json.dumps({"world": world()[0], "seen": seen, "val": _metrics(trainer.evaluator)}))


def evaluate(bundle: str, data: str, weights: str) -> None:
    trainer = _trainer(bundle, data)
    trainer.network.load_state_dict(torch.load(weights, weights_only=True))
    trainer.evaluator.run()
    (Path(bundle).parent / "single.json").write_text(json.dumps({"val": _metrics(trainer.evaluator)}))


if __name__ == "__main__":
    if sys.argv[1] == "train":
        run_parallel(train, (sys.argv[2], sys.argv[3]), int(sys.argv[4]))
    else:
        evaluate(sys.argv[2], sys.argv[3], sys.argv[4])
