"""``medseg infer``: volumes or DICOM series into masks on their own grids."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from medseg.cli.common import BUNDLE_DEFAULT, device_overrides, parse_overrides


def cmd_infer(args: argparse.Namespace) -> int:
    """``infer``: segment volumes into masks on the inputs' own grids, in the requested formats."""
    if bool(args.input) == bool(args.dicomweb):
        raise ValueError("Give the scans to segment: --input FILES, or --dicomweb URL --study UID (a series from a PACS).")
    if args.dicomweb and not args.study:
        raise ValueError("--dicomweb needs --study UID (and --series UID when the study holds several image series).")
    if args.store and not args.dicomweb:
        raise ValueError("--store sends the DICOM SEG back to the PACS the series came from: it needs --dicomweb.")
    overrides: dict[str, Any] = parse_overrides(args.set)  # model ids are checked against the model's record
    if args.keep_largest and args.no_postprocessing:
        raise ValueError("--keep-largest and --no-postprocessing contradict each other; give one of them.")
    if args.keep_largest:
        overrides["keep_largest"] = True
    if args.no_postprocessing:  # the raw argmax, whatever postprocessing.json decided
        overrides.update(keep_largest=False, remove_small={}, remove_detached={})
    if args.overlap is not None:
        overrides["overlap"] = args.overlap
    overrides.update(device_overrides(args))
    if args.tta_axes:  # the user's choice
        overrides["tta_axes"] = sorted(set(args.tta_axes))
    elif args.tta:  # the axes the model was trained to see mirrored (its record's mirror_axes); none: refused
        overrides["tta"] = True
    if args.folds and args.weights:
        raise ValueError("--folds and --weights both name weights; give one of them.")
    from medact_bundles import config_file

    config_file(args.bundle, "inference.json")  # a wrong --bundle first, in one line
    if args.dicomweb:
        return _infer_from_pacs(args, overrides)
    written = _infer_files(args, overrides)
    if args.json:
        print(json.dumps({src: [str(p) for p in files] for src, files in written.items()}))
    return 0


def _infer_files(args: argparse.Namespace, overrides: dict[str, Any]) -> dict[str, list[Path]]:
    """Segment ``args.input`` into ``args.output``; returns the written files by case."""
    from medseg.inference.segmenter import load_segmenter
    from medseg.io.channels import cases_from_inputs
    from medseg.io.volumes import read_header

    for path in args.input:  # then an unusable input (an RT plan, a lone DICOM slice, a bad header) fails before the model loads
        read_header(path, args.mat_image_var)
    segmenter = load_segmenter(args.bundle, args.weights, overrides, folds=args.folds)
    formats = [f.strip() for f in args.format.split(",") if f.strip()]
    cases = cases_from_inputs(args.input, segmenter.in_channels)  # several channels: case_0000, case_0001, ... are one case
    report = _progress_printer(args.json)
    written = segmenter.segment_files(
        cases, args.output, formats, args.mat_image_var, with_probabilities=args.save_probabilities, progress=report
    )
    if not args.json:
        print(f"{len(written)} case(s) segmented into {args.output}")
    return written


def _infer_from_pacs(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """``--dicomweb``: retrieve the series (WADO-RS) into a temporary folder named by its UID, segment it like a series
    folder, and with ``--store`` send the DICOM SEG back into its study (STOW-RS)."""
    import tempfile

    from medseg.io.dicomweb import pacs_from_arguments, retrieve_series, store_instance

    pacs = pacs_from_arguments(args.dicomweb, args.dicomweb_token, args.dicomweb_user)
    if args.store and "dicom-seg" not in args.format.split(","):
        args.format = f"{args.format},dicom-seg"
    with tempfile.TemporaryDirectory(prefix="medact-dicomweb-") as folder:
        series = retrieve_series(pacs, args.study, args.series, folder)
        args.input = [str(series)]
        (files,) = _infer_files(args, overrides).values()
        stored = {}
        if args.store:
            seg = next(p for p in files if p.name.endswith("_seg.dcm"))
            stored[str(seg)] = store_instance(pacs, seg)
            if not args.json:
                print(f"{seg.name} stored in study {args.study} at {args.dicomweb} (SOP Instance UID {stored[str(seg)]})")
    if args.json:
        print(json.dumps({"series": series.name, "written": [str(p) for p in files], "stored": stored}))
    return 0


def _progress_printer(as_json: bool) -> Any:
    """Per-case progress: each written case on stdout as it is done (``case -> files (s)``, not with ``--json``), and
    on a terminal the case being segmented on stderr (a pipe or a captured stderr keeps only errors)."""
    import sys

    def report(number: int, total: int, case: str, files: list[Path] | None, seconds: float) -> None:
        if files is None:
            if sys.stderr.isatty():
                print(f"[{number}/{total}] {case}: segmenting ...", file=sys.stderr, flush=True)
        elif not as_json:
            print(f"[{number}/{total}] {case} -> {', '.join(str(p) for p in files)} ({seconds:.1f} s)", flush=True)

    return report


def add_infer_parser(sub: Any) -> None:
    """The ``infer`` command's arguments."""
    from shared.devices import add_device_arguments

    p = sub.add_parser("infer", help="segment volumes into masks with the input's exact geometry")
    p.add_argument("--bundle", type=Path, required=True, help="bundle folder (from init-bundle or plan)")
    p.add_argument(
        "--input",
        nargs="+",
        help="volume files or DICOM series folders; a model with several channels takes each case as one 4D file or as "
        "its channel files case_0000.nii.gz case_0001.nii.gz ... (grouped by name)",
    )
    p.add_argument("--output", type=Path, required=True, help="output directory (must not be an input's folder if names collide)")
    p.add_argument(
        "--format",
        default="nifti,seg.nrrd",
        help="comma list of nifti, seg.nrrd, nrrd, mat, dicom-seg (a DICOM SEG of a DICOM series input; default: nifti,seg.nrrd)",
    )
    p.add_argument(
        "--weights", type=Path, help="weights file (default: <bundle>/models/model.pt; its model.json beside it gives the settings)"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="ID=VALUE",
        help="set an inference.json id, e.g. --set sw_batch_size=4 (repeatable); the model's own settings (width, pixdim, window, "
        "...) come from models/model.json and a value that contradicts them is refused",
    )
    p.add_argument("--keep-largest", action="store_true", help="keep only the largest connected component of each label")
    p.add_argument("--no-postprocessing", action="store_true", help="the raw argmax: none of the post-processing training chose")
    p.add_argument("--overlap", type=float, help="sliding-window overlap (default: the bundle's)")
    p.add_argument("--mat-image-var", help="variable holding the image in MATLAB .mat inputs")
    p.add_argument(
        "--folds", nargs="+", type=int, help="ensemble of cross-validation folds (models/fold_K/model.pt), probabilities averaged"
    )
    p.add_argument(
        "--tta",
        action="store_true",
        help="test-time augmentation: average the probabilities over every mirroring of the axes the bundle was trained "
        "mirrored along (its mirror_axes; all 3: 8 passes); refused for a bundle trained without mirroring (see --tta-axes)",
    )
    p.add_argument(
        "--tta-axes",
        nargs="+",
        type=int,
        choices=[0, 1, 2],
        help="mirror these axes at test time whatever the bundle was trained with (0 1 2: RAS x, y, z); measured to help on "
        "the MNI152 hemispheres (+0.02 Dice) and to hurt on the demo abdomen (-0.05): check on your validation cases",
    )
    p.add_argument(
        "--save-probabilities",
        action="store_true",
        help="also write <case>_probabilities.npz: float16 class probabilities (C, i, j, k) on the input grid, its ijk_to_lps and label names",
    )
    p.add_argument("--json", action="store_true", help="print written files as JSON")
    _add_dicomweb_arguments(p)
    add_device_arguments(p, inherited_from=BUNDLE_DEFAULT)
    p.set_defaults(func=cmd_infer)


def _add_dicomweb_arguments(p: Any) -> None:
    """``--dicomweb`` and its companions: a series from a PACS instead of ``--input``."""
    g = p.add_argument_group("a series from a PACS (DICOMweb: QIDO-RS, WADO-RS, STOW-RS) instead of --input")
    g.add_argument("--dicomweb", metavar="URL", help="DICOMweb root of the PACS, e.g. http://pacs:8042/dicom-web (Orthanc)")
    g.add_argument("--study", metavar="UID", help="Study Instance UID of the scan to segment")
    g.add_argument("--series", metavar="UID", help="Series Instance UID (needed when the study holds several image series)")
    g.add_argument("--store", action="store_true", help="send the DICOM SEG back into the study (STOW-RS); implies dicom-seg")
    g.add_argument("--dicomweb-token", help="bearer token for the PACS (or the environment variable MEDACT_DICOMWEB_TOKEN)")
    g.add_argument("--dicomweb-user", help="user for HTTP basic authentication; the password is read from MEDACT_DICOMWEB_PASSWORD")
