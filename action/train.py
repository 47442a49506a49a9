"""Train an action model through the shared engine: one ``shared.build_trainer`` call.

:func:`train_model` reads the training data of the model's input kind into a
:class:`~action.training_data.TrainingData` (:func:`~action.training_data.clip_data`,
:func:`~action.training_data.sequence_data`, :func:`~action.models.features.feature_data`), writes
``action_model.json``, builds the network from the options' seed and calls
``shared.build_trainer`` with MATLAB-style :class:`~shared.options.TrainingOptions`: progress
table, ``training_progress.png``, history, resumable checkpoints in ``<out>/checkpoints``,
``model.pt``. The bundle's ``train.json`` composes the same calls in JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from action.models.factory import MODELS
from action.sequences.dataset import SequenceInput
from action.training_data import DataSource, TrainingData, clip_data, sequence_data
from action.video.dataset import Sampling
from shared.data import world
from shared.engine import Trainer, build_trainer
from shared.ignite_metrics import confusion_metric
from shared.options import TrainingOptions

METRICS = ("accuracy", "precision", "recall", "f1")

#: defaults per input kind where one recipe cannot serve both (see :func:`default_options`)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip": {"initial_learn_rate": 1e-3, "max_epochs": 10},
    "features": {"initial_learn_rate": 1e-3, "max_epochs": 10},
    "sequence": {"initial_learn_rate": 3e-3, "max_epochs": 60, "gradient_threshold": 1.0},
}


def default_options(out: str | Path, kind: str = "clip", **changes: Any) -> TrainingOptions:
    """The action defaults for an input kind (``"clip"``, ``"features"``, ``"sequence"``), then ``changes``.

    All kinds: Adam, batch 16, reshuffled every epoch, validation at the end of each epoch,
    progress figure, checkpoints in ``out``. Videos and cached features: learning rate 1e-3,
    10 epochs. Sequences: see :data:`KIND_DEFAULTS` (chosen on real recordings over seeds,
    ``benchmarks/action_sequences.py``).
    """
    base = {
        "solver": "adam",
        "mini_batch_size": 16,
        "shuffle": "every-epoch",
        "validation_frequency": "epoch",
        "plots": "training-progress",
        "checkpoint_path": str(Path(out) / "checkpoints"),
        "verbose_frequency": 10,
        **KIND_DEFAULTS[kind],
    }
    return TrainingOptions(**{**base, **changes})


def classification_metrics(num_classes: int) -> dict[str, Any]:
    """Macro accuracy/precision/recall/F1 Ignite metrics from confusion counts (``shared.ignite_metrics``)."""
    return {name: confusion_metric(name, num_classes) for name in METRICS}


def read_training_data(kind: str, source: DataSource, seed: int = 0, inputs: Any = None) -> TrainingData:
    """The :class:`TrainingData` of an input kind; ``inputs`` is its :class:`Sampling`, :class:`SequenceInput`
    or :class:`action.models.features.FeatureInput` (``(sampling, feature_input)`` for features)."""
    if kind == "clip":
        return clip_data(source, inputs, seed)
    if kind == "sequence":
        return sequence_data(source, inputs, seed)
    from action.models.features import FeatureInput, feature_data

    sampling, features = inputs if isinstance(inputs, tuple) else (None, inputs or FeatureInput())
    return feature_data(source, sampling, features, seed)


def build_action_trainer(
    data: TrainingData,
    out: str | Path,
    model: str,
    options: TrainingOptions,
    model_kwargs: Mapping[str, Any] | None = None,
    resume: bool | str = False,
    num_workers: int = 0,
) -> Trainer:
    """Write ``action_model.json`` for ``model`` on ``data``, build the network from ``options.seed`` and the trainer."""
    config = data.write_model_record(out, model, dict(model_kwargs or {}))
    if world()[1] == 0:
        print(data.summary(), flush=True)  # train / validation / test counts and the held-out groups, every run (--quiet too)
    network = config.build(seed=options.seed)
    return build_trainer(
        network,
        torch.nn.CrossEntropyLoss(),
        options,
        data.train,
        data.val,
        metrics=classification_metrics(len(data.classes)),
        key_metric="accuracy",
        output_dir=out,
        resume=resume,
        train_hooks=data.hooks(options, num_workers),
        val_hooks=data.hooks(options),
    )


def train_model(
    source: DataSource | str | Path,
    out: str | Path,
    model: str = "c3d_gru",
    options: TrainingOptions | Mapping[str, Any] | None = None,
    inputs: Any = None,
    model_kwargs: Mapping[str, Any] | None = None,
    resume: bool | str = False,
    num_workers: int = 0,
) -> Trainer:
    """Build the trainer for ``model`` on the training split of ``source``; call ``.run()``.

    Args:
        source: :class:`DataSource` (or just its path): dataset folder / CSV list of videos, or a
            sequence file (``.npz``, ``.csv``, ``.mat``, ``.ts``); layout, split, validation share.
        out: model directory (``action_model.json``, ``model.pt``, history, figure, checkpoints).
        options: :class:`TrainingOptions` or a dict of changes to :func:`default_options` of the model's input kind.
        inputs: how the input is read: clips a :class:`Sampling` (default 20 frames of 64x64
            decoded at 72x72, random crops), sequences a :class:`SequenceInput`, feature models
            an :class:`action.models.features.FeatureInput` or ``(Sampling, FeatureInput)``.
        model_kwargs: model options (``hidden``, ``dropout``, ``reset_gate_mode``, ...).
        resume: continue from the newest checkpoint (``True``) or a checkpoint file.
        num_workers: DataLoader worker processes of the training data.
    """
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; expected one of {sorted(MODELS)}.")
    kind = MODELS[model].input
    source = source if isinstance(source, DataSource) else DataSource(source)
    if not isinstance(options, TrainingOptions):
        options = default_options(out, kind, **dict(options or {}))
    data = read_training_data(kind, source, options.seed or 0, inputs)
    return build_action_trainer(data, out, model, options, model_kwargs, resume, num_workers)


__all__ = [
    "KIND_DEFAULTS",
    "DataSource",
    "Sampling",
    "SequenceInput",
    "build_action_trainer",
    "classification_metrics",
    "default_options",
    "read_training_data",
    "train_model",
]
