"""What an action model trains on: one typed description, built by one function per input kind.

:class:`TrainingData` holds the training and validation datasets, the class names and the
input record that ``action_model.json`` keeps (clip sampling, sequence normalisation, feature
size, backbone). :func:`clip_data`, :func:`sequence_data` and :func:`action.models.features.feature_data`
build it; :func:`action.train.train_model` and the bundle's ``train.json`` both pass it to
``shared.build_trainer``, so the CLI and ``python -m monai.bundle run`` train the same thing.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from action.models.model_dir import ModelConfig
from action.sequences.dataset import SequenceDataset, SequenceInput, SequenceNormalization, read_sequences
from action.video.dataset import ClipDataset, Sampling
from action.video.decode import DecodeLimits
from action.video.layouts import read_videos, split_sequences, split_videos
from shared.data import world
from shared.engine import EngineHooks
from shared.io import atomic_write_json
from shared.options import TrainingOptions

logger = logging.getLogger(__name__)

#: validation share held out of the training data by default, per input kind. Sequences: none, as
#: MATLAB trains without validation data unless given; real recording sets are often small, and on
#: BasicMotions (40 recordings) a 10% hold-out cost accuracy: 0.93 ± 0.09 over 6 runs (lowest 0.78)
#: against 0.97 ± 0.01 (3 runs) training on all of them.
VAL_FRACTION = {"clip": 0.1, "features": 0.1, "sequence": 0.0}


@dataclasses.dataclass(frozen=True)
class DataSource:
    """Where the training data is and how to read it.

    Args:
        path: dataset folder or CSV list (videos), or a sequence file (``.npz``/``.csv``/``.mat``/``.ts``).
        layout: video dataset layout (:data:`action.video.layouts.LAYOUTS`, default detected).
        split: UCF101/HMDB51 split (1-3) or UCF50 test group.
        val_fraction: share held out for validation (``None``: :data:`VAL_FRACTION` of the kind): whole groups (UCF
            ``gNN``, HMDB51 source films, subjects) when the data has them, else stratified by class (:mod:`action.splits`).
        skip_bad: leave undecodable videos out (listed in ``skipped.json``) instead of failing.
        cache: keep decoded uint8 clips in RAM when their windows are fixed (MONAI ``CacheDataset``).
        limits: what a video header may claim (:class:`action.video.decode.DecodeLimits`).
    """

    path: str | Path
    layout: str = "auto"
    split: int = 1
    val_fraction: float | None = None
    skip_bad: bool = False
    cache: bool = True
    limits: DecodeLimits = DecodeLimits()

    def held_out(self, kind: str) -> float:
        return VAL_FRACTION[kind] if self.val_fraction is None else self.val_fraction


@dataclasses.dataclass
class TrainingData:
    """Datasets and input record of one training run.

    Attributes:
        kind: ``"clip"``, ``"sequence"`` or ``"features"`` (:data:`action.models.factory.MODELS` input kinds).
        split_report: what the validation hold-out asked and took (:func:`action.splits.hold_out`).
        test_count: items of the dataset's own test split (``None``: the data has none, e.g. a sequence file).
        train, val: map-style datasets of ``{"image", "label", "video"}`` (``val`` may be ``None``).
        classes: class names; labels index into them.
        sampling: how clips were sampled (clips; feature models: the cache's sampling).
        normalization: the fitted sequence normalisation (sequences).
        in_features: values per time step (sequences: channels; features: F).
        backbone: the backbone record of feature models.
    """

    kind: str
    train: Any
    val: Any
    classes: list[str]
    sampling: dict[str, Any] | None = None
    normalization: dict[str, Any] | None = None
    in_features: int | None = None
    backbone: dict[str, Any] | None = None
    split_report: str = ""
    test_count: int | None = None

    def summary(self) -> str:
        """One line: training / validation counts (and held-out groups) and the test count, as each run prints it."""
        unit = "recordings" if self.kind == "sequence" else "videos"
        test = f"; {self.test_count} test {unit} held apart by the dataset's split" if self.test_count is not None else ""
        return f"Data: {self.split_report}{test}."

    @property
    def skipped(self) -> list[dict[str, str]]:
        """Videos left out under ``skip_bad`` (training and validation)."""
        return [*getattr(self.train, "skipped", []), *getattr(self.val, "skipped", [])]

    def model_config(self, model: str, model_kwargs: dict[str, Any] | None = None) -> ModelConfig:
        """The ``action_model.json`` record of ``model`` trained on this data."""
        return ModelConfig(
            model,
            list(self.classes),
            sampling=self.sampling,
            model_kwargs=dict(model_kwargs or {}),
            in_features=self.in_features,
            backbone=self.backbone,
            normalization=self.normalization,
        )

    def write_model_record(
        self, out: str | Path, model: str, model_kwargs: dict[str, Any] | None = None, expected_classes: list[str] | None = None
    ) -> ModelConfig:
        """Write ``action_model.json`` (and ``skipped.json``) before training, from one process; returns the record.

        ``expected_classes``: the classes the network was built for (a bundle's ``channel_def``); data
        with other classes is an error, not a network whose outputs mean something else.
        """
        config = self.model_config(model, model_kwargs)
        if config.input != self.kind:
            raise ValueError(f"Model {model!r} reads {config.input} input, but the data is {self.kind} input.")
        if expected_classes is not None and list(expected_classes) != list(self.classes):
            raise ValueError(
                f"The data's classes {self.classes} differ from the network's {list(expected_classes)} "
                "(the bundle's metadata channel_def): same names, same order expected."
            )
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if world()[1] == 0:  # one writer in a distributed run
            config.save(out)
            if self.skipped:
                atomic_write_json(out / "skipped.json", self.skipped)
                logger.warning("%d videos skipped (listed in %s)", len(self.skipped), out / "skipped.json")
        return config

    def hooks(self, options: TrainingOptions, num_workers: int = 0) -> EngineHooks:
        """The engine hooks this input kind needs (see :func:`input_hooks`)."""
        return input_hooks(self.kind, options, num_workers)


def input_hooks(kind: str, options: TrainingOptions, num_workers: int = 0, **changes: Any) -> EngineHooks:
    """Engine hooks for an input kind: sequences are padded per the options and carry their mask to the network."""
    if kind != "sequence":
        return EngineHooks(num_workers=num_workers, **changes)
    from shared.sequences import SequenceCollate, prepare_sequence_batch

    return EngineHooks(
        prepare_batch=prepare_sequence_batch, collate_fn=SequenceCollate.from_options(options), num_workers=num_workers, **changes
    )


def clip_data(source: DataSource, sampling: Sampling | None = None, seed: int = 0) -> TrainingData:
    """Clips of the training split of ``source``: stratified validation hold-out, random windows and crops in training.

    ``seed`` chooses the hold-out; the random windows and crops are drawn from the options' seed
    by the engine (:meth:`action.video.dataset.ClipDataset.set_seed`).
    """
    sampling = sampling or Sampling(decode_size=(72, 72))
    videos = read_videos(source.path, source.layout, source.split, "train", seed=seed)
    train, val, report = split_videos(videos, source.held_out("clip"), seed)
    read = {"cache": source.cache, "limits": source.limits, "skip_bad": source.skip_bad}
    train_set = ClipDataset(train, sampling, train=True, **read)
    val_set = ClipDataset(val, sampling, train=False, **read) if val else None
    return TrainingData(
        "clip",
        train_set,
        val_set,
        list(videos.classes),
        sampling=sampling.to_dict(),
        split_report=report,
        test_count=count_test_videos(source, seed),
    )


def count_test_videos(source: DataSource, seed: int = 0) -> int | None:
    """Videos in the dataset's own test split (UCF101/HMDB51 split lists, UCF50's test group, the folder's stratified 20%)."""
    try:
        return len(read_videos(source.path, source.layout, source.split, "test", seed=seed).items)
    except ValueError:  # a layout without a test list (a CSV with no subset column names only what it lists)
        return None


def sequence_data(source: DataSource, spec: SequenceInput | None = None, seed: int = 0) -> TrainingData:
    """Recordings of a sequence file, normalised with statistics of the training part only."""
    spec = spec or SequenceInput()
    sequences = read_sequences(source.path, x_var=spec.x_var, y_var=spec.y_var)
    train, val, report = split_sequences(sequences, source.held_out("sequence"), seed)
    normalization = SequenceNormalization.fit(spec.normalization, train.x)
    val_set = SequenceDataset(val, normalization) if val else None
    train_set = SequenceDataset(train, normalization, spec.sort_by_length)
    return TrainingData(
        "sequence",
        train_set,
        val_set,
        list(sequences.classes),
        normalization=normalization.to_dict(),
        in_features=sequences.channels,
        split_report=report,
    )
