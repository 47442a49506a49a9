"""Evaluate a trained action model on a labelled split: the numbers, the tables, the chart.

The forward passes run in the shared engine's evaluator (``shared.engine.build_evaluator``);
a handler keeps each clip's probabilities so clip-level and video-level (probabilities
averaged over a video's clips) results come from the same pass. Written to ``out``:
``summary.json`` (accuracy, top-5, mean class accuracy, macro and weighted
precision/recall/F1, clip- and video-level accuracy, skipped videos), ``per_class.csv``,
``predictions.csv`` and ``confusion_chart.png`` (MATLAB ``confusionchart`` with row and
column summaries).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Events

from action.models.factory import MODELS
from action.predict import Predictor
from action.sequences.dataset import SequenceDataset, read_sequences
from action.video.dataset import ClipDataset
from action.video.decode import DecodeLimits
from action.video.layouts import read_videos
from shared.devices import precision_label
from shared.engine import build_evaluator
from shared.io import atomic_write_csv, atomic_write_json, to_strict_json
from shared.metrics import classification_report, confusion_matrix
from shared.options import TrainingOptions
from shared.plots import confusion_chart_figure, save_figure


def _dataset(
    predictor: Predictor,
    data: str | Path,
    layout: str,
    split: int,
    subset: str,
    skip_bad: bool,
    limits: DecodeLimits,
    mat_vars: tuple[str | None, str | None] = (None, None),
) -> Any:
    config = predictor.config
    if config.input == "sequence":
        sequences = read_sequences(data, classes=config.classes, x_var=mat_vars[0], y_var=mat_vars[1])
        if sequences.channels != config.in_features:
            raise ValueError(f"{data}: recordings have {sequences.channels} channels; the model was trained on {config.in_features}.")
        return SequenceDataset(sequences, config.sequence_normalization)
    videos = read_videos(data, layout, split, subset)
    if list(videos.classes) != list(config.classes):
        raise ValueError(
            f"{data}: its classes {videos.classes} differ from the model's {config.classes} (same names, same order expected)."
        )
    return ClipDataset(videos, config.clip_sampling, train=False, cache=False, limits=limits, skip_bad=skip_bad)


def collect_probabilities(predictor: Predictor, dataset: Any, batch_size: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the shared evaluator over ``dataset``; return per-clip ``(probabilities (N, C), labels (N,), video index (N,))``."""
    from action.training_data import input_hooks

    device = predictor.device  # the predictor's device and precision: evaluation measures what prediction will give
    options = TrainingOptions(
        mini_batch_size=batch_size, execution_environment=str(device), precision=precision_label(predictor.dtype), verbose=False, seed=None
    )
    hooks = input_hooks(predictor.config.input, options, decollate=False)
    evaluator = build_evaluator(
        predictor.network, dataset, options, metrics=None, key_metric=None, loss_function=torch.nn.CrossEntropyLoss(), hooks=hooks
    )
    kept: dict[str, list] = {"prob": [], "label": [], "video": []}

    @evaluator.on(Events.ITERATION_COMPLETED)
    def _keep(engine: Any) -> None:
        batch = engine.state.batch
        kept["prob"].append(torch.softmax(engine.state.output["pred"].float(), dim=1).cpu().numpy())
        kept["label"].append(np.asarray(batch["label"]))
        kept["video"].append(np.asarray(batch["video"]))

    evaluator.run()
    return tuple(np.concatenate(kept[k]) for k in ("prob", "label", "video"))  # type: ignore[return-value]


def video_level(prob: np.ndarray, labels: np.ndarray, videos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Average clip probabilities per video: ``(probabilities (V, C), labels (V,), video ids (V,))``."""
    ids = np.unique(videos)
    mean = np.stack([prob[videos == v].mean(axis=0) for v in ids])
    return mean, np.array([labels[videos == v][0] for v in ids]), ids


def top_k_accuracy(prob: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of samples whose true class is among the ``k`` most probable."""
    top = np.argsort(-prob, axis=1)[:, :k]
    return float((top == labels[:, None]).any(axis=1).mean())


def evaluate_model(
    model_dir: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    layout: str = "auto",
    split: int = 1,
    subset: str = "test",
    skip_bad: bool = False,
    batch_size: int = 8,
    limits: DecodeLimits = DecodeLimits(),
    mat_vars: tuple[str | None, str | None] = (None, None),
    device: Any = "auto",
    precision: str = "fp32",
) -> dict[str, Any]:
    """Evaluate ``model_dir`` on ``data`` (``subset`` of the layout's split); write reports to ``out`` if given.

    Returns:
        the summary dict: headline numbers are video-level (equal to clip-level with one clip
        per video): ``accuracy``, ``top5_accuracy``, ``mean_class_accuracy``,
        ``precision/recall/f1_macro`` and ``_weighted``, plus ``clip_accuracy``,
        ``video_accuracy``, ``videos``, ``clips``, ``per_class`` and ``skipped``.
    """
    predictor = Predictor.load(model_dir, device=device, precision=precision)
    dataset = _dataset(predictor, data, layout, split, subset, skip_bad, limits, mat_vars)
    prob, labels, videos = collect_probabilities(predictor, dataset, batch_size)
    classes = predictor.config.classes
    clip_cm = confusion_matrix(labels, prob.argmax(1), len(classes))
    vprob, vlabels, _ = video_level(prob, labels, videos)
    video_cm = confusion_matrix(vlabels, vprob.argmax(1), len(classes))
    report = classification_report(video_cm, classes)
    report.update(
        {
            "top5_accuracy": top_k_accuracy(vprob, vlabels, min(5, len(classes))),
            "clip_accuracy": classification_report(clip_cm, classes)["accuracy"],
            "video_accuracy": report["accuracy"],
            "clips": len(labels),
            "videos": len(vlabels),
            "confusion": video_cm.tolist(),
            "classes": list(classes),
            "skipped": list(getattr(dataset, "skipped", [])),
            "model": predictor.config.model,
        }
    )
    if out is not None:
        write_reports(Path(out), report, dataset, vprob, vlabels)
    return to_strict_json(report)


def item_unit(report: dict[str, Any]) -> str:
    """What the report's items are called: ``"recordings"`` for sequence models, else ``"videos"``."""
    return "recordings" if MODELS[report["model"]].input == "sequence" else "videos"


def write_reports(out: Path, report: dict[str, Any], dataset: Any, vprob: np.ndarray, vlabels: np.ndarray) -> None:
    """``summary.json``, ``per_class.csv``, ``predictions.csv``, ``confusion_chart.png`` in ``out``."""
    classes = report["classes"]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "summary.json", to_strict_json(report))
    atomic_write_csv(out / "per_class.csv", report["per_class"], ["class", "support", "precision", "recall", "f1", "iou"])
    names = getattr(dataset, "videos", None) or [f"sample{i}" for i in range(len(vlabels))]
    rows = [
        {"video": names[i], "true": classes[vlabels[i]], "predicted": classes[int(vprob[i].argmax())], "confidence": float(vprob[i].max())}
        for i in range(len(vlabels))
    ]
    atomic_write_csv(out / "predictions.csv", rows, ["video", "true", "predicted", "confidence"])
    unit = item_unit(report)
    title = f"{report['model']}: accuracy {100 * report['accuracy']:.1f}% ({report['videos']} {unit})"
    save_figure(confusion_chart_figure(np.asarray(report["confusion"]), classes, title=title), out / "confusion_chart.png")
