"""Predict actions in video files with a trained model directory (the CLI, the web app and evaluation use this).

:class:`Predictor` rebuilds the network from ``action_model.json`` + ``model.pt`` and reads
videos exactly as evaluation does (same sampling, same ``MinMaxd``, centre crops): a whole
video gets the probabilities averaged over its evaluation windows; ``timeline`` slides a
window (``pytorchvideo.data.UniformClipSampler``) along a long video and classifies each.
Every video is probed once and decoded once per call (all windows' timestamps in one streaming
read, classified in bounded batches as they complete: memory does not grow with the video's length).
Feature models (``feature_gru``) get their backbone prepended, so they read clips too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from action.models.model_dir import ModelConfig, load_model
from action.video.decode import DecodeLimits, iter_frames, probe, uniform_timestamps
from action.video.sampling import clip_windows, evaluation_view
from shared.devices import autocast, resolve_device, resolve_precision


@dataclasses.dataclass
class Predictor:
    """A loaded model: ``network`` maps ``(B, 3, T, H, W)`` clips (or ``(B, T, C)`` sequences) to logits.

    ``device`` (``auto``, ``cpu``, ``cuda``, ``cuda:N``) and ``precision`` (``fp32``, ``bf16``, ``fp16``, ``auto``)
    as :mod:`shared.devices` resolves them; decoding stays on the CPU, batches go to the device.
    """

    network: torch.nn.Module
    config: ModelConfig
    limits: DecodeLimits = DecodeLimits()
    device: str | torch.device = "auto"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self.device = resolve_device(self.device)
        self.dtype = resolve_precision(self.precision, self.device)
        self.network = self.network.to(self.device).eval()

    @classmethod
    def load(cls, model_dir: str | Path, limits: DecodeLimits = DecodeLimits(), device: Any = "auto", precision: str = "fp32") -> Predictor:
        network, config = load_model(model_dir)
        if config.input == "features":
            from action.models.features import with_backbone

            network = with_backbone(network, config)
        return cls(network.eval(), config, limits, device, precision)

    @property
    def classes(self) -> list[str]:
        return self.config.classes

    @torch.no_grad()
    def probabilities(self, batch: torch.Tensor, mask: torch.Tensor | None = None) -> np.ndarray:
        """Softmax probabilities ``(B, C)`` of a batch of network inputs (sequences: with their ``(B, T)`` mask)."""
        batch = batch.to(self.device, non_blocking=True)
        with autocast(self.device, self.dtype):
            logits = self.network(batch) if mask is None else self.network(batch, mask=mask.to(self.device))
        return torch.softmax(logits.float(), dim=1).cpu().numpy()

    def predict_sequences(
        self, path: str | Path, top_k: int = 5, x_var: str | None = None, y_var: str | None = None, batch_size: int = 64
    ) -> list[dict[str, Any]]:
        """Classify every recording of a sequence file (labels, if present, are ignored); one result per recording."""
        from action.sequences.dataset import SequenceDataset, read_sequences
        from shared.sequences import SequenceCollate

        if self.config.input != "sequence":
            raise ValueError(f"{path}: model {self.config.model!r} reads videos; give video files.")
        sequences = read_sequences(path, self.classes, x_var, y_var, labelled=False)
        if sequences.channels != self.config.in_features:
            raise ValueError(f"{path}: recordings have {sequences.channels} channels; the model was trained on {self.config.in_features}.")
        dataset, collate = SequenceDataset(sequences, self.config.sequence_normalization), SequenceCollate()
        results = []
        for first in range(0, len(dataset), batch_size):
            batch = collate([dataset[i] for i in range(first, min(first + batch_size, len(dataset)))])
            for row, prob in enumerate(self.probabilities(batch["image"], batch["mask"])):
                ranked = self._ranked(prob, top_k)
                results.append(
                    {
                        "video": f"{path}#{first + row}",
                        "steps": int(batch["mask"][row].sum()),
                        "label": ranked[0]["label"],
                        "confidence": ranked[0]["probability"],
                        "top_k": ranked,
                    }
                )
        return results

    def window_probabilities(
        self, path: str | Path, windows: list[tuple[float, float]], batch_size: int = 8, keep: Sequence[int] = ()
    ) -> tuple[np.ndarray, dict[int, np.ndarray]]:
        """Softmax probabilities ``(W, C)`` of ``windows`` (seconds) of one video, from one streaming decode.

        Memory is bounded whatever the video's length: frames arrive one at a time
        (:func:`action.video.decode.iter_frames`), each window's uint8 clip is filled as its frames
        pass and classified in batches of ``batch_size`` as soon as it is complete, then dropped.
        At any time only the windows open at the current frame, the ready batch and the whole-video
        windows are held (a 30-minute video's 1,800 timeline windows never sit in memory together).

        Args:
            keep: windows whose uint8 clips ``(T, H, W, 3)`` are returned too (the page's thumbnails).
        """
        if self.config.input == "sequence":
            raise ValueError(f"Model {self.config.model!r} reads sequences, not videos.")
        sampling = self.config.clip_sampling
        wanted = np.stack([uniform_timestamps(start, end, sampling.frames) for start, end in windows])  # (W, T) seconds
        times, index = np.unique(wanted, return_inverse=True)
        index = index.reshape(wanted.shape)  # window w's slot t shows frame times[index[w, t]]
        users = np.argsort(index, axis=None, kind="stable")  # flat (w, t) positions grouped by frame
        bounds = np.searchsorted(index.ravel()[users], np.arange(len(times) + 1))
        last = index.max(axis=1)  # a window is complete once its last frame has passed
        open_clips: dict[int, np.ndarray] = {}
        ready: list[int] = []
        probs, kept = np.zeros((len(windows), len(self.classes)), dtype=np.float32), {}

        def classify(batch: list[int]) -> None:
            probs[batch] = self.probabilities(self._network_inputs(np.stack([open_clips[w] for w in batch])))
            for w in batch:
                clip = open_clips.pop(w)
                if w in keep:
                    kept[w] = clip

        for frame_index, frame in enumerate(iter_frames(path, times, sampling.decode_hw, self.limits)):
            for position in users[bounds[frame_index] : bounds[frame_index + 1]]:
                w, t = divmod(int(position), sampling.frames)
                if w not in open_clips:
                    open_clips[w] = np.empty((sampling.frames, *frame.shape), dtype=np.uint8)
                open_clips[w][t] = frame
            ready += np.flatnonzero(last == frame_index).tolist()
            while len(ready) >= batch_size:
                classify(ready[:batch_size])
                del ready[:batch_size]
        if ready:
            classify(ready)
        return probs, kept

    def _network_inputs(self, clips: np.ndarray) -> torch.Tensor:
        """uint8 ``(W, T, H, W, 3)`` -> the evaluation view (centre crop, min-max) -> ``(W, 3, T, h, w)`` float32."""
        sampling = self.config.clip_sampling
        return torch.stack([evaluation_view(torch.from_numpy(clip).permute(3, 0, 1, 2), sampling) for clip in clips])

    def _ranked(self, prob: np.ndarray, top_k: int) -> list[dict[str, Any]]:
        order = np.argsort(-prob)[: max(1, min(top_k, len(prob)))]
        return [{"label": self.classes[i], "probability": float(prob[i])} for i in order]

    def predict(self, path: str | Path, top_k: int = 5) -> dict[str, Any]:
        """Classify one video: ``{"video", "duration_s", "label", "confidence", "top_k": [{"label", "probability"}]}``."""
        return self.analyse(path, top_k, timeline_window=None)

    def analyse(self, path: str | Path, top_k: int = 5, timeline_window: float | None = 2.0, stride: float | None = None) -> dict[str, Any]:
        """:meth:`predict`, plus (with ``timeline_window``) the frames of the whole video and the timeline.

        One probe and one decode for everything (the web server's request): ``"frames"`` uint8
        ``(T, H, W, 3)`` spread over the whole video, ``"timeline"`` as :meth:`timeline` for videos
        longer than two windows (else empty), ``"window_s"``.
        """
        info = probe(path, self.limits)
        windows = [w for w in clip_windows(info.duration, self.config.clip_sampling, train=False) if w is not None]
        extra = []
        if timeline_window is not None:
            extra = [(0.0, info.duration)]
            if info.duration > 2 * timeline_window:
                extra += self._timeline_windows(info.duration, timeline_window, stride)
        prob, kept = self.window_probabilities(path, windows + extra, keep=[len(windows)] if extra else [])
        ranked = self._ranked(prob[: len(windows)].mean(axis=0), top_k)
        result = {
            "video": str(path),
            "duration_s": info.duration,
            "label": ranked[0]["label"],
            "confidence": ranked[0]["probability"],
            "top_k": ranked,
        }
        if timeline_window is not None:
            rows = [self._row(window, p) for window, p in zip(extra[1:], prob[len(windows) + 1 :])]
            result.update(frames=kept[len(windows)], timeline=rows, window_s=timeline_window)
        return result

    def _timeline_windows(self, duration: float, window: float, stride: float | None) -> list[tuple[float, float]]:
        """Windows of ``window`` s every ``stride`` s (default ``window / 2``), the last aligned to the end (pytorchvideo's sampler)."""
        from pytorchvideo.data.clip_sampling import UniformClipSampler

        window = min(window, duration)
        sampler = UniformClipSampler(
            Fraction(window).limit_denominator(1000), Fraction(stride or window / 2).limit_denominator(1000), backpad_last=True
        )
        windows, last = [], Fraction(0)
        while True:
            clip = sampler(last, Fraction(duration).limit_denominator(1000), None)
            windows.append((float(clip.clip_start_sec), min(float(clip.clip_end_sec), duration)))
            last = clip.clip_end_sec
            if clip.is_last_clip:
                return windows

    def _row(self, window: tuple[float, float], prob: np.ndarray) -> dict[str, Any]:
        best = int(prob.argmax())
        return {"start_s": window[0], "end_s": window[1], "label": self.classes[best], "confidence": float(prob[best])}

    def timeline(
        self, path: str | Path, window: float | None = None, stride: float | None = None, batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """Per-window predictions along ``path``: ``[{"start_s", "end_s", "label", "confidence"}]``.

        Args:
            window: seconds per window (default: the model's ``clip_duration``, else 2 s).
            stride: seconds between window starts (default ``window / 2``).
        """
        info = probe(path, self.limits)
        windows = self._timeline_windows(info.duration, window or self.config.clip_sampling.clip_duration or 2.0, stride)
        prob, _ = self.window_probabilities(path, windows, batch_size)
        return [self._row(w, p) for w, p in zip(windows, prob)]
