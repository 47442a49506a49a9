"""Checkpoints of a training run and continuing from one: atomic saves at the options' cadence, and a resume that
adapts to a changed process count (epoch length) or a longer run (the learning-rate schedule refitted)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from shared import checkpoint as ckpt
from shared.options import TrainingOptions
from shared.schedules import refit_schedule

logger = logging.getLogger(__name__)


def epoch_length(trainer: Any) -> int:
    """Iterations per epoch of ``trainer``'s loader (1 for an iterable without a length)."""
    try:
        return len(trainer.data_loader)
    except TypeError:  # an iterable without a length: one step per "epoch" is the best guess
        return 1


def attach_checkpoints(trainer: Any, options: TrainingOptions, to_save: dict[str, Any], resume: bool | str) -> None:
    """Periodic atomic checkpoints (after the epoch's LR step when an epoch ends) and the resume itself."""
    if resume and options.checkpoint_path is None and not isinstance(resume, (str, Path)):
        raise ckpt.CheckpointError("resume=True needs options.checkpoint_path (the directory of the run to continue).")
    checkpointer = None
    if options.checkpoint_path is not None:
        folder = ckpt.prepare_checkpoint_dir(options.checkpoint_path, resume=bool(resume))
        checkpointer = ckpt.make_checkpointer(to_save, folder)
        every, unit = options.checkpoint_frequency, options.checkpoint_frequency_unit
        saved = {"iteration": -1}

        def save(engine: Engine) -> None:
            if saved["iteration"] != engine.state.iteration:
                checkpointer(engine)
                saved["iteration"] = engine.state.iteration

        if unit == "epoch":
            trainer.add_event_handler(Events.EPOCH_COMPLETED(every=every), save)
        else:  # an epoch's last iteration is saved at EPOCH_COMPLETED, after the LR schedule stepped
            mid_epoch = lambda e, _: e.state.iteration % every == 0 and e.state.iteration % e.state.epoch_length != 0
            trainer.add_event_handler(Events.ITERATION_COMPLETED(event_filter=mid_epoch), save)
            trainer.add_event_handler(Events.EPOCH_COMPLETED(event_filter=lambda e, _: e.state.iteration % every == 0), save)
        trainer.add_event_handler(Events.COMPLETED, save)
    if resume:
        _resume(trainer, options, to_save, checkpointer, resume)


def _adapt_epoch_length(trainer: Any, path: Path, done_epochs: int) -> None:
    """A checkpoint from a run with another number of processes has another epoch length: continue at its epoch boundary."""
    try:
        length = len(trainer.data_loader)
    except TypeError:
        return
    if length == trainer.state.epoch_length:
        return
    if trainer.state.iteration % trainer.state.epoch_length:
        raise ckpt.CheckpointError(
            f"Checkpoint {path} was saved mid-epoch by a run with {trainer.state.epoch_length} iterations per epoch (this run has {length}: "
            "another number of processes or batch size); resume from an epoch-end checkpoint instead."
        )
    trainer.state.epoch_length, trainer.state.iteration = length, done_epochs * length


def _resume(trainer: Any, options: TrainingOptions, to_save: dict[str, Any], checkpointer: Any, resume: bool | str) -> None:
    if isinstance(resume, (str, Path)) and not isinstance(resume, bool):
        path, state = Path(resume), ckpt.read_checkpoint(resume)
    else:
        path, state = ckpt.load_latest_checkpoint(options.checkpoint_path)
    to_load = dict(to_save)
    if checkpointer is not None and "checkpointer" in state:
        to_load["checkpointer"] = checkpointer
    missing = [key for key in to_load if key not in state]
    if missing:
        raise ckpt.CheckpointError(
            f"Checkpoint {path} lacks {missing}: it was saved with different options (validation, patience, schedule or output_network)."
        )
    Checkpoint.load_objects(to_load=to_load, checkpoint=state)
    done_epochs = trainer.state.iteration // trainer.state.epoch_length
    _adapt_epoch_length(trainer, path, done_epochs)
    if math.isfinite(options.max_minutes):  # a time budget sets the run's length as it goes (shared.handlers.TimeBudget)
        return
    if options.max_epochs < done_epochs:
        raise ckpt.CheckpointError(f"Checkpoint {path} is at epoch {done_epochs}, beyond max_epochs={options.max_epochs}.")
    if trainer.state.max_epochs != options.max_epochs and "lr_scheduler" in to_save:
        refit_schedule(to_save["lr_scheduler"], options, trainer.state.epoch_length)
        logger.info(
            "Run extended from %d to %d epochs: learning-rate schedule recomputed for the new length.",
            trainer.state.max_epochs,
            options.max_epochs,
        )
    if done_epochs == options.max_epochs and not trainer.state.iteration % trainer.state.epoch_length:
        logger.warning(
            "Checkpoint %s: this run already finished (epoch %d of max_epochs=%d); nothing to train. "
            "Give a larger max_epochs (medseg/action train --epochs N) to continue it.",
            path,
            done_epochs,
            options.max_epochs,
        )
    trainer.state.max_epochs = options.max_epochs
    logger.info("Resumed from %s at iteration %d.", path, trainer.state.iteration)
