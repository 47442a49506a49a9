"""Training process for the SIGKILL crash test (run as a script, not collected by pytest).

Trains TinyNet on 96 blob samples, 8 per batch (12 iterations per epoch), checkpointing
every iteration, sleeping ``--sleep`` seconds per iteration so a kill can land anywhere.
At the end it writes the final weights to ``--out``/model.pt and prints a JSON line.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from ignite.engine import Events

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from shared.engine import build_trainer
from shared.options import TrainingOptions
from tests.shared.conftest import TinyNet, blobs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--out", required=True)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.0)
    args = parser.parse_args()
    torch.manual_seed(0)
    options = TrainingOptions(
        max_epochs=args.epochs,
        mini_batch_size=8,
        shuffle="every-epoch",
        verbose=False,
        initial_learn_rate=0.01,
        checkpoint_path=args.ckpt,
        checkpoint_frequency=1,
        checkpoint_frequency_unit="iteration",
        learn_rate_schedule="piecewise",
        learn_rate_drop_period=1,
        learn_rate_drop_factor=0.7,
    )
    trainer = build_trainer(
        TinyNet(), torch.nn.CrossEntropyLoss(), options, blobs(96, seed=1), blobs(16, seed=2), output_dir=args.out, resume=args.resume
    )
    if args.sleep:
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: time.sleep(args.sleep))
    trainer.run()
    print(json.dumps({"iteration": trainer.state.iteration}), flush=True)


if __name__ == "__main__":
    main()
