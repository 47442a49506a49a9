"""``python -m medseg serve``: a web page and a JSON API that segment an uploaded scan with a bundle (Flask).

Segmentation is the CLI's :class:`medseg.infer.Segmenter` (no second inference path), so the
downloads equal what ``medseg infer`` writes: ``<case>_seg.nii.gz`` + colour table and
``<case>.seg.nrrd`` (opens in 3D Slicer), on the scan's exact grid.

Routes: ``GET /`` (the page), ``POST /api/segment`` (multipart ``file``: NIfTI, NRRD, MetaImage, or a
zip of one DICOM series), ``GET /api/results/<id>/<file>`` (downloads), ``GET
/api/results/<id>/view/<axis>/<index>.png`` (a slice with the mask overlaid), ``GET /api/health``.
Failures answer JSON ``{"error", "status"}``: 400 bad request or hostile zip, 413 over the size or
member limits, 422 not a readable scan, 503 no model, 500 internal error with an ``error_id``.

Safety, as the video server: each upload goes into its own private folder (``mkdtemp``, 0700) under
a per-server root, under a name of ours; what a file is is decided from its bytes
(:mod:`medseg.uploads`); zips are checked before anything is extracted; the uploaded scan is removed
once segmented, and results are removed ``keep_minutes`` after they were made (and on shutdown);
segmentations run one at a time (``workers``); it binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data import strip_suffix
from medseg.export import default_colours, export_mask
from medseg.io import VolumeError, read_volume
from medseg.uploads import UploadError, scan_suffix, unpack_dicom_zip
from medseg.views import AXES, save_views, slice_png
from shared.web import install_error_handlers, json_error, run_server

logger = logging.getLogger("medseg.serve")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
MAX_ZIP_MEMBERS = 5000


def case_name(filename: str | None) -> str:
    """A safe file stem from the client's file name (letters, digits, ``_-.``; at most 60), else ``"scan"``."""
    stem = strip_suffix(Path((filename or "").replace("\\", "/")).name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.removesuffix(".zip"))[:60].strip("._")
    return stem or "scan"


def _summary(mask: np.ndarray, spacing: Any, names: dict[int, str], colours: dict) -> list[dict[str, Any]]:
    counts = np.bincount(mask.ravel(), minlength=max(names) + 1)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return [{"value": v, "name": n, "colour": [round(float(c), 3) for c in colours.get(v, (0.5, 0.5, 0.5))[:3]] if v else None,
             "voxels": int(counts[v]), "volume_ml": round(float(counts[v]) * voxel_ml, 3)} for v, n in sorted(names.items())]  # fmt: skip


class Results:
    """Per-request folders under a private root, removed ``keep_s`` seconds after they were made."""

    def __init__(self, keep_s: float) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="medact-scans-"))
        self.keep_s = keep_s

    def new(self) -> tuple[str, Path]:
        token = secrets.token_urlsafe(18)
        folder = self.root / token
        folder.mkdir(mode=0o700)
        return token, folder

    def get(self, token: str) -> Path | None:
        folder = self.root / token
        return folder if TOKEN.match(token) and folder.is_dir() else None

    def sweep(self) -> None:
        for folder in self.root.iterdir():
            if time.time() - folder.stat().st_mtime > self.keep_s:
                shutil.rmtree(folder, ignore_errors=True)


def segment_upload(segmenter: Any, upload: Any, folder: Path, max_bytes: int) -> dict[str, Any]:
    """Store, identify, (unzip,) segment and export one upload into ``folder``; returns the JSON answer's body."""
    case = case_name(upload.filename)
    stored = folder / "upload"
    upload.save(stored)
    suffix = scan_suffix(stored)
    if suffix == ".zip":
        scan = unpack_dicom_zip(stored, folder / "dicom", MAX_ZIP_MEMBERS, max_bytes * 10)
    else:
        scan = stored.rename(folder / f"scan{suffix}")
    stored.unlink(missing_ok=True)
    mask, geometry = segmenter.segment(scan)
    image, _ = read_volume(scan)
    colours = dict(segmenter.colours or default_colours(list(segmenter.names)))
    colours = {int(k): v for k, v in colours.items()}
    written = export_mask(mask, geometry, folder, case, segmenter.names, ("nifti", "seg.nrrd"), colours)
    views = save_views(folder / "views.npz", image, mask, geometry, colours)
    if scan.is_dir():
        shutil.rmtree(scan)
    else:
        scan.unlink()
    kinds = {"_seg.nii.gz": "nifti", "_seg.ctbl": "colour_table", ".seg.nrrd": "seg_nrrd"}
    return {"case": case, "shape": list(geometry.shape), "spacing_mm": [round(float(s), 4) for s in geometry.spacing],
            "labels": _summary(mask, geometry.spacing, dict(segmenter.names), colours), "views": views,
            "downloads": {next(k for s, k in kinds.items() if p.name.endswith(s)): p.name for p in written}}  # fmt: skip


def _add_result_routes(app: Any, results: Results) -> None:
    """Downloads (only the exported masks and colour table) and slice views of a result folder."""
    from flask import send_file

    @app.get("/api/results/<token>/<name>")
    def download(token: str, name: str) -> Any:
        folder = results.get(token)
        if folder is None or not name.endswith(("_seg.nii.gz", ".seg.nrrd", "_seg.ctbl")) or "/" in name or not (folder / name).is_file():
            return json_error(404, "No such result (results are removed after a while; segment the scan again).")
        return send_file(folder / name, as_attachment=True, download_name=name)

    @app.get("/api/results/<token>/view/<axis>/<int:index>.png")
    def view(token: str, axis: str, index: int) -> Any:
        folder = results.get(token)
        if folder is None or axis not in AXES or not (folder / "views.npz").is_file():
            return json_error(404, "No such view.")
        try:
            return app.response_class(slice_png(folder / "views.npz", axis, index), mimetype="image/png")
        except IndexError as err:
            return json_error(404, str(err))


def create_app(bundle: str | Path, max_upload_mb: float = 500, keep_minutes: float = 30, workers: int = 1, weights: str | Path | None = None) -> Any:
    """The Flask app; ``app.config["RESULTS"]`` holds the private result root."""
    from flask import Flask, jsonify, request

    from medseg.infer import load_segmenter

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
    results = app.config["RESULTS"] = Results(keep_minutes * 60)
    try:
        segmenter, problem = load_segmenter(bundle, weights), ""
    except (OSError, ValueError, RuntimeError) as err:
        logger.error("Bundle %s could not be loaded: %s", bundle, err)
        segmenter, problem = None, f"the bundle in {bundle} could not be loaded"
    gate = threading.BoundedSemaphore(max(1, workers))
    page = resources.files("medseg").joinpath("web/index.html").read_text(encoding="utf-8")

    app.before_request(results.sweep)  # expired results go whatever the next request is

    @app.get("/")
    def index() -> Any:
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/health")
    def health() -> Any:
        names = dict(segmenter.names) if segmenter else {}
        return jsonify({"status": "ok", "model_loaded": segmenter is not None, "labels": names, "max_upload_mb": max_upload_mb, "problem": problem or None})

    @app.post("/api/segment")
    def segment() -> Any:
        if segmenter is None:
            return json_error(503, f"No model loaded: {problem}.")
        upload = request.files.get("file")
        if upload is None:
            return json_error(400, "Send the scan as the multipart form field 'file'.")
        token, folder = results.new()
        try:
            with gate:
                body = segment_upload(segmenter, upload, folder, app.config["MAX_CONTENT_LENGTH"])
            base = f"/api/results/{token}"
            body.update(id=token, expires_in_s=round(results.keep_s), downloads={k: f"{base}/{v}" for k, v in body["downloads"].items()},
                        view_url=f"{base}/view/{{axis}}/{{index}}.png")  # fmt: skip
            return jsonify(body)
        except UploadError as err:
            shutil.rmtree(folder, ignore_errors=True)
            return json_error(err.status, str(err))
        except VolumeError as err:
            shutil.rmtree(folder, ignore_errors=True)
            return json_error(422, "Not a readable scan: " + re.sub(re.escape(str(folder)) + r"/\S*", "the uploaded scan", str(err)))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    _add_result_routes(app, results)
    install_error_handlers(app, max_upload_mb, logger)
    return app


def serve(bundle: str | Path, host: str = "127.0.0.1", port: int = 8001, max_upload_mb: float = 500, keep_minutes: float = 30, workers: int = 1) -> None:
    """Run the app on a threaded WSGI server until interrupted; removes every result on exit."""
    app = create_app(bundle, max_upload_mb, keep_minutes, workers)
    banner = lambda port: f"Serving on http://{host}:{port}/ (bundle: {bundle}; uploads up to {max_upload_mb:g} MB; results kept {keep_minutes:g} min)"  # noqa: E731
    run_server(app, host, port, banner, app.config["RESULTS"].root)
