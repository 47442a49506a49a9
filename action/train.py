"""Train an action model through the shared engine (``shared.engine.build_trainer``).

:func:`train_model` reads the training split of a dataset (any layout of
:mod:`action.layouts`, a ``.npz``/``.csv`` of sequences, or a feature cache), holds out a
stratified validation fraction, builds the named model, writes ``action_model.json`` and
trains with MATLAB-style :class:`~shared.options.TrainingOptions` (Adam, 1e-3 by default):
progress table, ``training_progress.png``, history, resumable checkpoints in
``<out>/checkpoints``, ``model.pt``. It is also what the bundle's ``train.json`` calls.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from action.data import ClipDataset, Sampling
from action.layouts import VideoList, read_videos, stratified_split
from action.model_dir import ModelConfig
from action.models import MODELS
from action.sequences import SequenceDataset, SequenceInput, SequenceNormalization, Sequences, read_sequences
from action.video import DecodeLimits
from shared.data import world
from shared.engine import EngineHooks, Trainer, build_trainer
from shared.ignite_metrics import confusion_metric
from shared.io import atomic_write_json
from shared.options import TrainingOptions

logger = logging.getLogger(__name__)
METRICS = ("accuracy", "precision", "recall", "f1")


#: defaults per input kind where one recipe cannot serve both (see :func:`default_options`)
KIND_DEFAULTS: dict[str, dict[str, Any]] = {
    "clip": {"initial_learn_rate": 1e-3, "max_epochs": 10},
    "features": {"initial_learn_rate": 1e-3, "max_epochs": 10},
    "sequence": {"initial_learn_rate": 3e-3, "max_epochs": 60, "gradient_threshold": 1.0},
}


#: validation share held out of the training data by default, per input kind. Sequences: none, as
#: MATLAB trains without validation data unless given; real recording sets are often small, and on
#: BasicMotions (40 recordings) a 10% hold-out cost accuracy: 0.93 ± 0.09 over 6 runs (lowest 0.78)
#: against 0.97 ± 0.01 (3 runs) training on all of them.
VAL_FRACTION = {"clip": 0.1, "features": 0.1, "sequence": 0.0}


def default_options(out: str | Path, kind: str = "clip", **changes: Any) -> TrainingOptions:
    """The action defaults for an input kind (``"clip"``, ``"features"``, ``"sequence"``), then ``changes``.

    All kinds: Adam, batch 16, reshuffled every epoch, validation at the end of each epoch,
    progress figure, checkpoints in ``out``.
    Videos and cached features: learning rate 1e-3, 10 epochs. Sequences: see :data:`KIND_DEFAULTS`
    (chosen on real recordings over seeds, ``benchmarks/action_sequences.py``).
    """
    base = {"solver": "adam", "mini_batch_size": 16, "shuffle": "every-epoch", "validation_frequency": "epoch", "plots": "training-progress",
            "checkpoint_path": str(Path(out) / "checkpoints"), "verbose_frequency": 10, **KIND_DEFAULTS[kind]}  # fmt: skip
    return TrainingOptions(**{**base, **changes})


def classification_metrics(num_classes: int) -> dict[str, Any]:
    """Macro accuracy/precision/recall/F1 Ignite metrics from confusion counts (``shared.ignite_metrics``)."""
    return {name: confusion_metric(name, num_classes) for name in METRICS}


def _split_videos(videos: VideoList, val_fraction: float, seed: int) -> tuple[VideoList, VideoList | None]:
    if val_fraction <= 0:
        return videos, None
    held = stratified_split([label for _, label in videos.items], val_fraction, seed)
    train = VideoList([item for item, h in zip(videos.items, held) if not h], videos.classes)
    return train, VideoList([item for item, h in zip(videos.items, held) if h], videos.classes)


def _split_sequences(seqs: Sequences, val_fraction: float, seed: int) -> tuple[Sequences, Sequences | None]:
    if val_fraction <= 0:
        return seqs, None
    held = np.asarray(stratified_split(seqs.y.tolist(), val_fraction, seed), dtype=bool)
    return seqs.subset(~held), seqs.subset(held)


def clip_data(data: str | Path, sampling: Sampling, layout: str, split: int, val_fraction: float, seed: int, skip_bad: bool, cache: bool, limits: DecodeLimits) -> tuple[Any, Any, list[str]]:
    """Training and validation :class:`ClipDataset` of the training split of ``data``."""
    videos = read_videos(data, layout, split, "train", seed=seed)
    train, val = _split_videos(videos, val_fraction, seed)
    train_set = ClipDataset(train, sampling, train=True, cache=cache, limits=limits, skip_bad=skip_bad)
    val_set = ClipDataset(val, sampling, train=False, cache=cache, limits=limits, skip_bad=skip_bad) if val else None
    return train_set, val_set, videos.classes


def sequence_data(data: str | Path, val_fraction: float, seed: int, spec: SequenceInput) -> tuple[Any, Any, list[str], int, SequenceNormalization]:
    """Training/validation :class:`SequenceDataset`, classes, channels and the normalisation fitted on the training part."""
    seqs = read_sequences(data, x_var=spec.x_var, y_var=spec.y_var)
    train, val = _split_sequences(seqs, val_fraction, seed)
    normalization = SequenceNormalization.fit(spec.normalization, train.x)
    val_set = SequenceDataset(val, normalization) if val else None
    return SequenceDataset(train, normalization, spec.sort_by_length), val_set, seqs.classes, seqs.channels, normalization


def train_model(
    data: str | Path,
    out: str | Path,
    model: str = "c3d_gru",
    options: TrainingOptions | Mapping[str, Any] | None = None,
    sampling: Sampling | None = None,
    layout: str = "auto",
    split: int = 1,
    val_fraction: float | None = None,
    model_kwargs: Mapping[str, Any] | None = None,
    backbone: str | None = None,
    weights: str | Path | None = None,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    cache: bool = True,
    resume: bool = False,
    limits: DecodeLimits = DecodeLimits(),
    num_workers: int = 0,
    backbone_size: int = 224,
    sequence_input: SequenceInput | None = None,
) -> Trainer:
    """Build the trainer for ``model`` on the training split of ``data``; call ``.run()``.

    Args:
        data: dataset folder / CSV (videos), ``.npz``/``.csv`` sequences (model ``gru``).
        out: model directory (``action_model.json``, ``model.pt``, history, figure, checkpoints).
        options: :class:`TrainingOptions` or a dict of changes to :func:`default_options`.
        sampling: clip sampling (default 20 frames of 64x64 decoded at 72x72, random crops).
        val_fraction: stratified share of the training split used for validation (0: none; ``None``:
            :data:`VAL_FRACTION` of the input kind).
        backbone: feature models (``feature_gru``): backbone name(s), see :mod:`action.features`.
        weights: feature models: backbone weights file(s).
        cache_dir: feature models: the ``extract-features`` cache.
        skip_bad: leave undecodable videos out (listed in ``<out>/skipped.json``) instead of failing.
        cache: keep decoded uint8 clips in RAM (MONAI ``CacheDataset``).
        backbone_size: feature models: backbone input size in pixels (frames are resized to it).
        sequence_input: sequence models: normalisation, sort-by-length, ``.mat`` variable names.
    """
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; expected one of {sorted(MODELS)}.")
    out = Path(out)
    kind = MODELS[model].input
    val_fraction = VAL_FRACTION[kind] if val_fraction is None else val_fraction
    if not isinstance(options, TrainingOptions):
        options = default_options(out, kind, **dict(options or {}))
    seed = options.seed or 0
    sampling = sampling or Sampling(decode_size=(72, 72))
    config = ModelConfig(model, [], sampling.to_dict(), dict(model_kwargs or {}))
    if kind == "clip":
        train_set, val_set, config.classes = clip_data(data, sampling, layout, split, val_fraction, seed, skip_bad, cache, limits)
    elif kind == "sequence":
        train_set, val_set, config.classes, config.in_features, normalization = sequence_data(data, val_fraction, seed, sequence_input or SequenceInput())
        config.sampling, config.normalization = None, normalization.to_dict()
    else:
        from action.features import feature_data

        train_set, val_set, config.classes, config.in_features, config.backbone = feature_data(data, sampling, layout, split, val_fraction, seed, backbone, weights, cache_dir, limits, backbone_size)
        config.sampling = config.backbone["sampling"]  # predict must sample frames exactly as the cache did
    out.mkdir(parents=True, exist_ok=True)
    skipped = [*getattr(train_set, "skipped", []), *getattr(val_set, "skipped", [])]
    if world()[1] == 0:  # one writer in a distributed run
        config.save(out)
    if skipped and world()[1] == 0:
        atomic_write_json(out / "skipped.json", skipped)
        logger.warning("%d videos skipped (listed in %s)", len(skipped), out / "skipped.json")
    network = config.build()
    train_hooks, val_hooks = input_hooks(kind, options, num_workers), input_hooks(kind, options)
    return build_trainer(
        network, torch.nn.CrossEntropyLoss(), options, train_set, val_set, metrics=classification_metrics(len(config.classes)),
        key_metric="accuracy", output_dir=out, resume=resume, train_hooks=train_hooks, val_hooks=val_hooks,
    )  # fmt: skip


def input_hooks(kind: str, options: TrainingOptions, num_workers: int = 0, **changes: Any) -> EngineHooks:
    """Engine hooks for an input kind: sequences are padded per the options and carry their mask to the network."""
    if kind != "sequence":
        return EngineHooks(num_workers=num_workers, **changes)
    from shared.sequences import SequenceCollate, prepare_sequence_batch

    return EngineHooks(prepare_batch=prepare_sequence_batch, collate_fn=SequenceCollate.from_options(options), num_workers=num_workers, **changes)
