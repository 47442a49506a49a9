"""A trained model directory: ``action_model.json`` (what the network is and reads) + ``model.pt``.

``action_model.json`` is written before training starts (so a run's checkpoints are always
next to the description they need) and holds the model name and options, the class names,
the input kind, the clip sampling or sequence normalisation window, and for feature models
the backbone (name, weights file hash, feature size) so prediction computes the same features.
Sequence models keep their input normalisation (kind and training statistics, ``normalization``).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from action.models.factory import MODELS, build_model
from action.video.sampling import Sampling
from shared.io import atomic_write_json
from shared.weights import load_weights

CONFIG_NAME = "action_model.json"
WEIGHTS_NAME = "model.pt"


@dataclasses.dataclass
class ModelConfig:
    """What :func:`load_model` needs to rebuild a trained network."""

    model: str
    classes: list[str]
    sampling: dict[str, Any] | None = None
    model_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    in_features: int | None = None
    backbone: dict[str, Any] | None = None
    window: list[list[float]] | None = None  # models saved before ``normalization``: a min-max window
    normalization: dict[str, Any] | None = None

    @property
    def input(self) -> str:
        return MODELS[self.model].input

    @property
    def clip_sampling(self) -> Sampling:
        return Sampling.from_dict(self.sampling or {})

    @property
    def sequence_normalization(self) -> Any:
        """The :class:`action.sequences.dataset.SequenceNormalization` a sequence model was trained with."""
        from action.sequences.dataset import SequenceNormalization

        return SequenceNormalization.from_dict(self.normalization, self.window)

    def build(self, seed: int | None = None) -> torch.nn.Module:
        """The network this record describes, with fresh weights (from ``seed``, see :func:`action.models.factory.build_model`)."""
        sampling = self.clip_sampling
        return build_model(self.model, len(self.classes), sampling.frames, sampling.size, self.in_features, seed=seed, **self.model_kwargs)

    def save(self, directory: str | Path) -> Path:
        return atomic_write_json(Path(directory) / CONFIG_NAME, dataclasses.asdict(self))

    @classmethod
    def load(cls, directory: str | Path) -> ModelConfig:
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {directory} is not a trained action model directory (python -m action train --out DIR)."
            )
        data = json.loads(path.read_text(encoding="utf-8"))
        unknown = set(data) - {f.name for f in dataclasses.fields(cls)}
        if unknown or data.get("model") not in MODELS:
            raise ValueError(f"{path}: unknown model {data.get('model')!r} or fields {sorted(unknown)}.")
        return cls(**data)


def load_model(directory: str | Path, weights: str | Path | None = None) -> tuple[torch.nn.Module, ModelConfig]:
    """Rebuild the network of ``directory`` and load ``model.pt`` (or ``weights``); eval mode, on CPU."""
    config = ModelConfig.load(directory)
    network = config.build()
    load_weights(network, weights or Path(directory) / WEIGHTS_NAME)
    return network.eval(), config
