"""``medseg evaluate``: compare predicted and reference label maps; write CSV, JSON and PNG reports.

Outputs in ``out``: ``per_case.csv`` (one row per case and label), ``summary.json``
(per-label means, status counts, MATLAB tables), ``dataset_metrics.csv``,
``class_metrics.csv``, ``image_metrics.csv``, ``normalized_confusion.csv``,
``metric_bars.png``, ``overlays.png`` (worst and best case), ``confusion_chart.png`` and,
when the training history is given, ``training_progress.png``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation.metrics import CaseResult, evaluate_case, matlab_tables, summarise
from medseg.io.channels import read_channels
from medseg.io.colours import default_colours
from medseg.io.volumes import VolumeError, read_volume, strip_suffix
from shared.io import atomic_write_csv, atomic_write_json
from shared.plots import confusion_chart_figure, metric_bars_figure, overlay_figure, save_figure

logger = logging.getLogger(__name__)
CASE_COLUMNS = ("case", "label", "name", "status", "dice", "iou", "recall", "precision", "f1", "hd95_mm", "ref_ml", "pred_ml")


def pair_predictions(pred_dir: str | Path, label_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """``(case, prediction, reference)`` by name: ``case7_seg.nii.gz`` or ``case7.nii.gz`` <-> ``case7.*``."""
    preds = {}
    for path in sorted(Path(pred_dir).iterdir()):
        stem = strip_suffix(path.name)
        if stem == path.name or path.name.endswith((".seg.nrrd", ".ctbl")):
            continue
        preds[stem.removesuffix("_seg")] = path
    refs = {strip_suffix(p.name): p for p in sorted(Path(label_dir).iterdir()) if strip_suffix(p.name) != p.name}
    missing = sorted(set(refs) - set(preds))
    extra = sorted(set(preds) - set(refs))
    if extra:
        raise VolumeError(f"Predictions without a reference in {label_dir}: {extra}.")
    if missing:
        logger.warning("No prediction for %d reference case(s) in %s: %s", len(missing), pred_dir, missing)
    if not preds:
        raise VolumeError(f"{pred_dir}: no prediction volumes found.")
    return [(case, preds[case], refs[case]) for case in sorted(preds)]


def evaluate_pairs(pairs: Sequence[tuple[str, Path, Path]], names: Mapping[int, str]) -> tuple[list[CaseResult], dict]:
    """Evaluate every ``(case, prediction, reference)``; geometry must agree to 1e-4 mm."""
    results, slices = [], {}
    for case, pred_path, ref_path in pairs:
        pred, pred_geometry = read_volume(pred_path)
        ref, ref_geometry = read_volume(ref_path)
        differences = pred_geometry.matches(ref_geometry)
        if differences:
            raise VolumeError(f"{pred_path}: grid differs from the reference {ref_path}: {'; '.join(differences)}.")
        try:
            results.append(evaluate_case(case, pred.astype(np.int64), ref.astype(np.int64), names, ref_geometry.spacing))
        except ValueError as err:  # name the file, not only the case
            raise VolumeError(f"{pred_path}: {err}") from None
        slices[case] = _slice_of_interest(pred, ref, axial_axis(ref_geometry))
    return results, slices


def axial_axis(geometry: Any) -> int:
    """The voxel axis (0, 1, 2) that runs closest to the patient's inferior-superior direction: its slices are axial.

    File order is not anatomy: a sagittal acquisition stores left-right along k, and its k slices are sagittal.
    """
    return int(np.argmax(np.abs(geometry.direction_matrix[2, :])))  # row 2: the S component of each index axis


def _slice_of_interest(pred: np.ndarray, ref: np.ndarray, axis: int = 2) -> dict:
    """The axial slice (along voxel ``axis``, :func:`axial_axis`) with the most reference foreground, for the overlay."""
    others = tuple(a for a in range(3) if a != axis)
    counts = (ref > 0).sum(axis=others)
    k = int(np.argmax(counts)) if counts.any() else ref.shape[axis] // 2
    return {"axis": axis, "k": k, "reference": np.take(ref, k, axis=axis).copy(), "prediction": np.take(pred, k, axis=axis).copy()}


def write_report(
    results: Sequence[CaseResult],
    names: Mapping[int, str],
    out: str | Path,
    slices: Mapping[str, dict] | None = None,
    images: Mapping[str, str] | None = None,
    colours: Mapping[int, Sequence[float]] | None = None,
    history_dir: str | Path | None = None,
) -> dict:
    """Write every report file into ``out``; returns the summary (also in ``summary.json``)."""
    out = Path(out)
    summary = summarise(results, names)
    summary["matlab"] = matlab_tables(results, names)
    rows = [row for r in results for row in r.rows]
    atomic_write_csv(out / "per_case.csv", rows, CASE_COLUMNS)
    atomic_write_json(out / "summary.json", summary)
    tables = summary["matlab"]
    atomic_write_csv(out / "dataset_metrics.csv", [tables["DataSetMetrics"]], list(tables["DataSetMetrics"]))
    atomic_write_csv(out / "class_metrics.csv", tables["ClassMetrics"], ["Class", "Accuracy", "IoU", "MeanBFScore", "Voxels"])
    atomic_write_csv(
        out / "image_metrics.csv",
        tables["ImageMetrics"],
        ["Case", "GlobalAccuracy", "MeanAccuracy", "MeanIoU", "WeightedIoU", "MeanBFScore"],
    )
    class_names = [names[n] for n in sorted(names)]
    confusion_rows = [
        {"true_class": class_names[i], **dict(zip(class_names, row))} for i, row in enumerate(tables["NormalizedConfusionMatrix"])
    ]
    atomic_write_csv(out / "normalized_confusion.csv", confusion_rows, ["true_class", *class_names])
    save_figure(
        metric_bars_figure(summary["per_label"], ["dice", "iou", "recall", "precision"], "Mean over cases (error bars: std)"),
        out / "metric_bars.png",
    )
    save_figure(
        confusion_chart_figure(np.asarray(tables["ConfusionMatrix"]), class_names, normalise=True, title="Voxel confusion (all cases)"),
        out / "confusion_chart.png",
    )
    if slices:
        _write_overlays(results, slices, images or {}, colours or default_colours(sorted(names)), out / "overlays.png")
    if history_dir is not None and (Path(history_dir) / "training_progress.png").is_file():
        shutil.copyfile(Path(history_dir) / "training_progress.png", out / "training_progress.png")
    return summary


def _case_dice(result: CaseResult) -> float:
    values = [r["dice"] for r in result.rows if np.isfinite(r["dice"])]
    return float(np.mean(values)) if values else float("nan")


def _write_overlays(
    results: Sequence[CaseResult], slices: Mapping[str, dict], images: Mapping[str, str], colours: Mapping[int, Sequence[float]], path: Path
) -> None:
    ranked = sorted((r for r in results if np.isfinite(_case_dice(r))), key=_case_dice)
    chosen = [("worst", ranked[0]), ("best", ranked[-1])] if len(ranked) > 1 else [("only", r) for r in ranked]
    panels = []
    for tag, result in chosen:
        piece = slices[result.case]
        background = piece["reference"].astype(float)
        if result.case in images:
            background = np.take(read_channels(images[result.case])[0][0], piece["k"], axis=piece.get("axis", 2)).astype(float)  # channel 0
        panels.append(
            {
                "title": f"{tag}: {result.case} (mean Dice {_case_dice(result):.3f}, {'ijk'[piece.get('axis', 2)]}={piece['k']})",
                "image": background,
                "reference": piece["reference"],
                "prediction": piece["prediction"],
            }
        )
    if panels:
        save_figure(overlay_figure(panels, colours), path)


def evaluate_folders(
    pred_dir: str | Path,
    label_dir: str | Path,
    out: str | Path,
    names: Mapping[int, str],
    image_dir: str | Path | None = None,
    history_dir: str | Path | None = None,
) -> dict:
    """``medseg evaluate``: every prediction in ``pred_dir`` against its reference in ``label_dir``."""
    pairs = pair_predictions(pred_dir, label_dir)
    images = {}
    if image_dir is not None:
        images = {strip_suffix(p.name): str(p) for p in Path(image_dir).iterdir() if strip_suffix(p.name) != p.name}
    results, slices = evaluate_pairs(pairs, names)
    return write_report(results, names, out, slices, images, history_dir=history_dir)


def evaluate_cases(segmenter: Any, items: Sequence[dict], output_dir: str | Path, history_dir: str | Path | None = None) -> dict:
    """Segment each case's image, then write the full evaluation report against its label.

    Predictions go to ``<output_dir>/pred`` (NIfTI + Slicer files); the report to ``output_dir``.
    """
    from medseg.evaluation.report import evaluate_pairs, write_report
    from medseg.io.channels import case_name, source_key

    missing = [item["image"] for item in items if "label" not in item]
    if missing:
        raise VolumeError(f"Cannot evaluate cases without labels: {missing[:5]}.")
    output_dir = Path(output_dir)
    written = segmenter.segment_files([item["image"] for item in items], output_dir / "pred", ("nifti", "seg.nrrd"))
    pairs, images = [], {}
    for item in items:
        case = case_name(item["image"])
        nifti = next(p for p in written[source_key(item["image"])] if p.name.endswith("_seg.nii.gz"))
        pairs.append((case, nifti, Path(item["label"])))
        images[case] = source_key(item["image"])
    results, slices = evaluate_pairs(pairs, segmenter.names)
    summary = write_report(results, segmenter.names, output_dir, slices, images, segmenter.colours, history_dir)
    logger.info("Evaluation of %d cases: mean Dice %.4f; report in %s", len(items), summary["mean_dice"], output_dir)
    return summary
