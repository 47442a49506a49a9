"""The one training engine of medact: MONAI ``SupervisedTrainer`` / ``SupervisedEvaluator`` + shared handlers.

``build_trainer`` turns (network, loss, :class:`~shared.options.TrainingOptions`, data,
metrics) into a ready Ignite engine that behaves like MATLAB's ``trainNetwork``:
validation at MATLAB's cadence, the verbose table, the training-progress figure,
validation patience, learning-rate schedules, gradient clipping, L2 on weights,
resumable checkpoints, and the final weights saved as ``<output_dir>/model.pt``.

It is the same call from Python, from the CLIs and from a MONAI bundle config::

    "trainer": {"_target_": "shared.engine.build_trainer", "network": "@network",
                "loss_function": "@loss", "options": "@options", "train_data": "@train#dataset",
                "val_data": "@validate#dataset", "metrics": "@metrics", "key_metric": "dice",
                "output_dir": "@output_dir"},
    "run": ["$@trainer.run()"]

Behaviour changes go through hooks (:class:`EngineHooks`: ``prepare_batch``,
``inferer``, ``postprocessing``), never through a second training loop.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import EarlyStopping, ProgressBar
from ignite.metrics import Metric
from ignite.metrics.metric import BatchWise
from monai.engines import SupervisedEvaluator, SupervisedTrainer, default_prepare_batch
from monai.handlers import LrScheduleHandler
from monai.transforms import Compose, CopyItemsd
from monai.utils import CommonKeys, set_determinism

from shared import checkpoint as ckpt
from shared import devices
from shared.data import EpochSampler, make_loader, set_data_epoch, world
from shared.handlers import GradientClipping, PeriodicValidation, TimeBudget, TrainingMonitor, loss_value, total_iterations
from shared.ignite_metrics import RAW_LABEL_KEY, RAW_PRED_KEY, loss_metric
from shared.options import TrainingOptions
from shared.resume import attach_checkpoints, epoch_length
from shared.schedules import build_scheduler, refit_schedule, schedule_is_per_iteration
from shared.weights import save_weights

logger = logging.getLogger(__name__)
_NORM_TYPES = (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm)


@dataclasses.dataclass
class EngineHooks:
    """How one engine reads batches and post-processes outputs (MONAI's hooks, grouped).

    Args:
        prepare_batch: batch -> ``(inputs, targets)`` on the device (MONAI ``default_prepare_batch``
            reads ``"image"``/``"label"`` dicts and ``(x, y)`` pairs).
        inferer: e.g. ``monai.inferers.SlidingWindowInferer`` for whole-volume validation.
        postprocessing: MONAI transform applied to each output (e.g. argmax + one-hot for Dice).
        decollate: split batches into per-sample dicts before postprocessing (MONAI default).
        num_workers: DataLoader worker processes when a Dataset is given.
        batch_size: samples per batch when a Dataset is given (default ``options.mini_batch_size``;
            1 for whole volumes of different sizes).
        collate_fn: how samples become a batch when a Dataset is given (e.g.
            :class:`shared.sequences.SequenceCollate` for unequal-length sequences).
    """

    prepare_batch: Callable = default_prepare_batch
    inferer: Any = None
    postprocessing: Callable | None = None
    decollate: bool = True
    num_workers: int = 0
    batch_size: int | None = None
    collate_fn: Callable | None = None

    def loader_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`shared.data.make_loader` these hooks set."""
        return {"collate_fn": self.collate_fn} if self.collate_fn is not None else {}


class Trainer(SupervisedTrainer):
    """MONAI ``SupervisedTrainer`` that refuses to silently restart a finished run.

    Ignite restarts from iteration 0 when ``run()`` is called on a completed state; after
    resuming from a final checkpoint that would throw the trained weights away.
    """

    evaluator: SupervisedEvaluator | None = None
    monitor: TrainingMonitor | None = None
    options: TrainingOptions | None = None

    def run(self) -> None:  # type: ignore[override]
        if self.state.epoch_length and self.state.iteration >= total_iterations(self):
            logger.warning("Training already complete at iteration %d; nothing to run.", self.state.iteration)
            return
        super().run()


@dataclasses.dataclass
class Placement:
    """Where one engine runs and at what precision (see :mod:`shared.devices`), as MONAI engine arguments.

    CUDA: ``non_blocking`` copies, MONAI's ``amp`` with the autocast dtype (a ``GradScaler`` in training).
    CPU bf16: MONAI autocasts only on CUDA, so the forward pass goes through :class:`shared.devices.AutocastInferer`.
    """

    device: torch.device
    dtype: torch.dtype | None = None

    @classmethod
    def of(cls, options: TrainingOptions) -> Placement:
        device = devices.resolve_device(options.execution_environment)
        return cls(device, devices.resolve_precision(options.precision, device))

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def engine_kwargs(self, inferer: Any) -> dict[str, Any]:
        """``device``, ``non_blocking``, ``amp``/``amp_kwargs`` and the ``inferer`` of a MONAI trainer or evaluator."""
        kwargs: dict[str, Any] = {"device": self.device, "non_blocking": self.cuda, "inferer": inferer}
        if self.dtype is not None and self.cuda:
            kwargs.update(amp=True, amp_kwargs={"dtype": self.dtype})
        elif self.dtype is not None:
            kwargs["inferer"] = devices.AutocastInferer(inferer, self.device, self.dtype)
        return kwargs

    def loader_kwargs(self, num_workers: int) -> dict[str, Any]:
        """Pinned host memory on CUDA; worker processes kept across epochs (no re-spawn, no re-import)."""
        return {"pin_memory": self.cuda, "persistent_workers": num_workers > 0}


def seed_everything(seed: int | None, deterministic: bool = False) -> None:
    """Seed torch, numpy and random (MONAI ``set_determinism``); ``None`` leaves them alone.

    MONAI's ``set_determinism`` also turns cuDNN's benchmark off and deterministic kernels on; that is kept
    only when ``deterministic`` is asked for (``TrainingOptions.deterministic``); otherwise cuDNN picks the
    fastest kernels (``benchmark=True``), as nnU-Net trains. Seeds still fix weights, order and sampling.
    """
    if seed is not None:
        set_determinism(seed=seed)
    torch.backends.cudnn.deterministic = bool(deterministic)
    torch.backends.cudnn.benchmark = not deterministic


def build_optimizer(network: torch.nn.Module, options: TrainingOptions) -> torch.optim.Optimizer:
    """The solver of ``options`` with MATLAB's L2 placement: weights decay, biases do not
    (``BiasL2Factor=0``), normalisation scale/offset do (``ScaleL2Factor=OffsetL2Factor=1``)."""
    decay, no_decay = [], []
    for module in network.modules():
        for name, param in module.named_parameters(recurse=False):
            if param.requires_grad:
                skip = name.startswith("bias") and not isinstance(module, _NORM_TYPES)
                (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.l2_regularization}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    lr = options.learn_rate
    if options.solver == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(options.gradient_decay_factor, options.squared_decay), eps=options.epsilon)
    if options.solver == "rmsprop":
        return torch.optim.RMSprop(groups, lr=lr, alpha=options.squared_decay, eps=options.epsilon)
    return torch.optim.SGD(groups, lr=lr, momentum=options.momentum)


def build_evaluator(
    network: torch.nn.Module,
    val_data: Any,
    options: TrainingOptions,
    metrics: Mapping[str, Metric] | None = None,
    key_metric: str | None = None,
    loss_function: Callable | None = None,
    hooks: EngineHooks | None = None,
) -> SupervisedEvaluator:
    """A MONAI ``SupervisedEvaluator`` computing ``metrics`` (copies) and, given ``loss_function``, ``"loss"``.

    Args:
        val_data: Dataset (batched with ``options.mini_batch_size``, dataset order) or DataLoader.
        metrics: name -> Ignite metric (``shared.ignite_metrics.confusion_metric``, MONAI handlers, ...).
        key_metric: the metric MONAI tracks as best (``None``: the loss, lower is better).
    """
    hooks = hooks or EngineHooks()
    all_metrics = {name: copy.deepcopy(m) for name, m in (metrics or {}).items()}
    postprocessing = hooks.postprocessing
    if loss_function is not None:
        all_metrics["loss"] = loss_metric(loss_function)
        if postprocessing is not None:  # keep the raw output and label: the loss needs logits, not one-hot masks
            keep_raw = CopyItemsd(keys=[CommonKeys.PRED, CommonKeys.LABEL], names=[RAW_PRED_KEY, RAW_LABEL_KEY], allow_missing_keys=True)
            postprocessing = Compose([keep_raw, postprocessing])
    key = key_metric or "loss"
    if key not in all_metrics:
        raise ValueError(f"key_metric={key!r} is not among the metrics {sorted(all_metrics)}.")
    lower_is_better = key == "loss"
    placement = Placement.of(options)
    return SupervisedEvaluator(
        val_data_loader=make_loader(
            val_data,
            options,
            train=False,
            num_workers=hooks.num_workers,
            batch_size=hooks.batch_size,
            **placement.loader_kwargs(hooks.num_workers),
            **hooks.loader_kwargs(),
        ),
        network=network,
        prepare_batch=hooks.prepare_batch,
        **placement.engine_kwargs(hooks.inferer),
        postprocessing=postprocessing,
        key_val_metric={key: all_metrics.pop(key)},
        additional_metrics=all_metrics or None,
        metric_cmp_fn=(lambda current, best: current < best) if lower_is_better else (lambda current, best: current > best),
        decollate=hooks.decollate,
    )


def build_trainer(
    network: torch.nn.Module,
    loss_function: Callable,
    options: TrainingOptions | Mapping[str, Any],
    train_data: Any,
    val_data: Any = None,
    metrics: Mapping[str, Metric] | None = None,
    key_metric: str | None = None,
    output_dir: str | Path | None = None,
    resume: bool | str = False,
    train_hooks: EngineHooks | None = None,
    val_hooks: EngineHooks | None = None,
    handlers: Sequence[Any] = (),
) -> Trainer:
    """Build the trainer (and its evaluator) for one training run.

    Args:
        network: the model; moved to the options' device.
        loss_function: ``loss(pred, target)`` returning a scalar (e.g. ``monai.losses.DiceLoss``).
        options: :class:`TrainingOptions` or a dict of them (MATLAB CamelCase keys accepted).
        train_data: Dataset (batched and ordered per ``options``) or DataLoader.
        val_data: validation Dataset or DataLoader (``None``: no validation).
        metrics: name -> Ignite metric; computed on validation data and, for ``key_metric``,
            also on each training mini-batch (MATLAB's "Mini-batch Accuracy" column).
        key_metric: the metric of the table and figure (``None``: loss only).
        output_dir: history.csv/json, training_progress.png, training_options.json, model.pt.
        resume: ``True`` continues from the newest readable checkpoint in
            ``options.checkpoint_path`` (an error if there is none); a path names a checkpoint file.
        train_hooks: :class:`EngineHooks` of the trainer.
        val_hooks: :class:`EngineHooks` of the evaluator.
        handlers: extra Ignite/MONAI handlers (objects with ``attach(engine)``), attached last.

    Returns:
        :class:`Trainer`; call ``.run()``. ``.evaluator``, ``.monitor.rows`` (history) and
        ``.options`` are attached to it.
    """
    options = options if isinstance(options, TrainingOptions) else TrainingOptions.from_dict(options)
    train_hooks, val_hooks = train_hooks or EngineHooks(), val_hooks or EngineHooks()
    _check_objective(options, metrics, key_metric, val_data)
    seed_everything(options.seed, options.deterministic)
    trainer, network, output_dir = _placed_trainer(network, loss_function, options, train_data, train_hooks, output_dir)
    trainer.options = options
    _attach_sampler_epochs(trainer, trainer.data_loader)
    GradientClipping(network.parameters(), options.gradient_threshold, options.gradient_threshold_method).attach(trainer)
    if key_metric and metrics and key_metric in metrics:
        attach_batchwise(copy.deepcopy(metrics[key_metric]), trainer, f"train_{key_metric}")
    validation = None
    if val_data is not None:
        trainer.evaluator = build_evaluator(network, val_data, options, metrics, key_metric, loss_function, val_hooks)
        validation = PeriodicValidation(trainer.evaluator, options.validation_frequency)
        validation.attach(trainer)
    to_save = _attach_training_handlers(trainer, options, key_metric, validation, output_dir)
    attach_checkpoints(trainer, options, to_save, resume)
    for handler in handlers:
        handler.attach(trainer)
    if options.verbose and world()[1] == 0 and sys.stderr.isatty():
        ProgressBar(persist=False).attach(trainer, output_transform=lambda out: {"loss": loss_value(out)})
    if output_dir is not None:
        options.save(Path(output_dir) / "training_options.json")
    return trainer


def _placed_trainer(
    network: torch.nn.Module, loss_function: Callable, options: TrainingOptions, train_data: Any, hooks: EngineHooks, output_dir: Any
) -> tuple[Trainer, torch.nn.Module, Any]:
    """The trainer on the options' device (DDP-wrapped across processes) and its loader; ``output_dir`` on rank 0 only."""
    placement = Placement.of(options)
    device = placement.device
    network = network.to(device)
    size, rank = world()
    if size > 1:  # PyTorch DDP (gloo on CPU, nccl on GPUs); Ignite checkpoints save the unwrapped module
        network = torch.nn.parallel.DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
    output_dir = output_dir if rank == 0 else None  # one set of output files: history, figure, model.pt from rank 0
    optimizer = build_optimizer(network, options)
    loader = make_loader(
        train_data,
        options,
        train=True,
        num_workers=hooks.num_workers,
        batch_size=hooks.batch_size,
        **placement.loader_kwargs(hooks.num_workers),
        **hooks.loader_kwargs(),
    )
    trainer = Trainer(
        max_epochs=options.max_epochs,
        train_data_loader=loader,
        network=network,
        optimizer=optimizer,
        loss_function=loss_function,
        prepare_batch=hooks.prepare_batch,
        postprocessing=hooks.postprocessing,
        **placement.engine_kwargs(hooks.inferer),
        decollate=hooks.decollate,
    )
    return trainer, network, output_dir


def _check_objective(options: TrainingOptions, metrics: Mapping | None, key_metric: str | None, val_data: Any) -> None:
    names = ["loss", *(metrics or {})]
    if key_metric is not None and key_metric not in (metrics or {}):
        raise ValueError(f"key_metric={key_metric!r} is not one of the metrics given: {sorted(metrics or {})}.")
    if options.objective_metric_name not in names:
        raise ValueError(f"objective_metric_name={options.objective_metric_name!r} is not a validation metric; expected one of {names}.")
    if val_data is None and options.output_network == "best-validation":
        raise ValueError("output_network='best-validation' needs validation data (val_data is None).")
    if val_data is None and math.isfinite(options.validation_patience):
        logger.warning("validation_patience=%s ignored: there is no validation data.", options.validation_patience)


def attach_batchwise(metric: Metric, engine: Engine, name: str) -> None:
    """Compute ``metric`` on each iteration's output alone (Ignite ``BatchWise``), into ``engine.state.metrics[name]``.

    MONAI's metric handlers do not take a ``usage``; for them the same is done by hand. They
    also refuse to ``compute()`` before ``attach()``: they are attached to an idle engine that
    never fires, so that only this handler drives them.
    """
    if "usage" in inspect.signature(metric.attach).parameters:
        metric.attach(engine, name, usage=BatchWise())
        return
    metric.attach(Engine(lambda *_: None), name)

    def compute(eng: Engine) -> None:
        metric.reset()
        metric.iteration_completed(eng)
        eng.state.metrics[name] = metric.compute()

    engine.add_event_handler(Events.ITERATION_COMPLETED, compute)


def _attach_sampler_epochs(trainer: Engine, loader: Any) -> None:
    """Select each epoch's order (and the dataset's random draws) and, after a mid-epoch resume, skip the batches already trained.

    Ignite creates the epoch's loader iterator after ``EPOCH_STARTED``, so worker processes get
    the dataset with its epoch already set.
    """
    sampler = getattr(loader, "sampler", None)
    dataset = getattr(loader, "dataset", None)

    @trainer.on(Events.EPOCH_STARTED)
    def _select_epoch(engine: Engine) -> None:
        set_data_epoch(dataset, engine.state.epoch)
        if isinstance(sampler, EpochSampler):
            sampler.set_epoch(engine.state.epoch)
            sampler.skip((engine.state.iteration % engine.state.epoch_length) * loader.batch_size)


class BestNetwork:
    """Keep the weights of the best validation objective (MATLAB ``OutputNetwork="best-validation"``)."""

    def __init__(self, network: torch.nn.Module, objective: str) -> None:
        # the unwrapped module: weights kept without DDP's "module." prefix load in any process count
        self.network = network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network
        self.objective = objective
        self.score, self.iteration, self.weights = -math.inf, 0, {}

    def score_of(self, evaluator: Engine) -> float:
        value = float(evaluator.state.metrics[self.objective])
        return -value if self.objective == "loss" else value

    def update(self, evaluator: Engine, trainer: Engine) -> None:
        score = self.score_of(evaluator)
        if score > self.score:
            self.score, self.iteration = score, trainer.state.iteration
            self.weights = {k: v.detach().cpu().clone() for k, v in self.network.state_dict().items()}

    def restore(self) -> None:
        if self.weights:
            self.network.load_state_dict(self.weights)

    def state_dict(self) -> dict[str, Any]:
        return {"score": self.score, "iteration": self.iteration, "weights": self.weights}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.score, self.iteration, self.weights = float(state["score"]), int(state["iteration"]), dict(state["weights"])


def _attach_training_handlers(
    trainer: Trainer, options: TrainingOptions, key_metric: str | None, validation: PeriodicValidation | None, output_dir: Any
) -> dict[str, Any]:
    """Patience, best network, history/table/figure, LR schedule and the final model; returns what a checkpoint holds."""
    generator = getattr(trainer.data_loader, "generator", None)
    rng = ckpt.RNGState({"train_loader": generator} if isinstance(generator, torch.Generator) else None)
    to_save: dict[str, Any] = {"network": trainer.network, "optimizer": trainer.optimizer, "trainer": trainer, "rng": rng}
    best = None
    if validation is not None:
        best_keeper = BestNetwork(trainer.network, options.objective_metric_name)
        if math.isfinite(options.validation_patience):
            stopper = EarlyStopping(int(options.validation_patience), best_keeper.score_of, trainer)
            trainer.evaluator.add_event_handler(Events.COMPLETED, stopper)
            to_save["early_stopping"] = stopper
        if options.output_network == "best-validation":
            best = best_keeper
            trainer.evaluator.add_event_handler(Events.COMPLETED, best.update, trainer)
            to_save["best_network"] = best
    verbose = options.verbose and world()[1] == 0
    trainer.monitor = TrainingMonitor(
        key_metric, validation, output_dir, verbose, options.verbose_frequency, options.plots == "training-progress"
    )
    trainer.monitor.attach(trainer)
    to_save["history"] = trainer.monitor
    scheduler = build_scheduler(trainer.optimizer, options, epoch_length(trainer))
    if scheduler is not None:
        LrScheduleHandler(scheduler, print_lr=False, epoch_level=not schedule_is_per_iteration(options)).attach(trainer)
        to_save["lr_scheduler"] = scheduler
    if math.isfinite(options.max_minutes):

        def refit(epochs: int) -> None:  # the run's new length, and the schedule fitted to it
            trainer.state.max_epochs = epochs
            if scheduler is not None:
                refit_schedule(scheduler, options.replace(max_epochs=epochs), epoch_length(trainer))

        reserve = (lambda: validation.seconds) if validation is not None else None  # for the last weights' validation
        TimeBudget(options.max_minutes, refit, reserve).attach(trainer)

    @trainer.on(Events.COMPLETED)
    def _finish(engine: Trainer) -> None:
        if best is not None:
            best.restore()
            engine.monitor.stop_reason += f"; weights of the best validation (iteration {best.iteration})"
        if output_dir is not None:
            save_weights(engine.network, Path(output_dir) / "model.pt")

    return to_save
