"""``python -m medseg serve``: a web page and a JSON API that segment an uploaded scan with a bundle (Flask).

Segmentation is the CLI's :class:`medseg.inference.segmenter.Segmenter` (no second inference path), so the
downloads equal what ``medseg infer`` writes: ``<case>_seg.nii.gz`` + colour table and
``<case>.seg.nrrd`` (opens in 3D Slicer), on the scan's exact grid.

Routes: ``GET /`` (the page), ``POST /api/segment`` (multipart ``file``: NIfTI, NRRD, MetaImage, or a
zip of one DICOM series), ``GET /api/results/<id>/<file>`` (downloads), ``GET
/api/results/<id>/view/<axis>/<index>.png`` (a slice with the mask overlaid), ``GET /api/health``.
Failures answer JSON ``{"error", "status"}``: 400 bad request or hostile zip, 413 over the size,
voxel or member limits, 422 not a readable scan or a header whose data lives elsewhere, 503 no
model or every transfer slot taken, 500 internal error with an ``error_id``.

Safety, as the video server: each upload goes into its own private folder (``mkdtemp``, 0700) under
a per-server root, under a name of ours; what a file is is decided from its bytes
(:mod:`medseg.web.uploads`); only the uploaded bytes are read (a NRRD/MetaImage header naming a data
file, or a NIfTI/Analyze pair, is refused before any reader sees it); the voxel count the header
declares is checked against ``max_voxels`` before any voxel is read (a 1 MB ``.nii.gz`` may declare
2 x 10^9); zips are checked before anything is extracted; the uploaded scan is removed once
segmented, and results are removed ``keep_minutes`` after they were finished (and on shutdown);
segmentations run one at a time (``workers``) and uploads hold one of ``max_transfers`` slots; it
binds to 127.0.0.1 unless told otherwise. The whole policy: ``docs/uploads.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
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

from medseg.datasets.datalists import strip_suffix
from medseg.io.channels import read_channels
from medseg.io.colours import default_colours
from medseg.io.export import export_mask
from medseg.web.uploads import MAX_UPLOAD_VOXELS, UploadLimits, in_new_folder, store_upload
from medseg.web.views import AXES, save_views, slice_png
from shared.web import ServerOptions, TransferGate, install_error_handlers, json_error, run_server

logger = logging.getLogger("medseg.web.server")
TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


def upload_case_name(filename: str | None) -> str:
    """A safe file stem from the client's file name (letters, digits, ``_-.``; at most 60), else ``"scan"``."""
    stem = strip_suffix(Path((filename or "").replace("\\", "/")).name)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem.removesuffix(".zip"))[:60].strip("._")
    return stem or "scan"


def _summary(mask: np.ndarray, spacing: Any, names: dict[int, str], colours: dict) -> list[dict[str, Any]]:
    counts = np.bincount(mask.ravel(), minlength=max(names) + 1)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return [
        {
            "value": v,
            "name": n,
            "colour": [round(float(c), 3) for c in colours.get(v, (0.5, 0.5, 0.5))[:3]] if v else None,
            "voxels": int(counts[v]),
            "volume_ml": round(float(counts[v]) * voxel_ml, 3),
        }
        for v, n in sorted(names.items())
    ]


class Results:
    """Per-request folders under a private root, removed ``keep_s`` seconds after they were last used.

    Use is counted, not flagged: :meth:`new` and :meth:`hold` take a use, :meth:`done` gives one back, and a folder
    is swept only when expired and unused (two MONAI Label inferences on one image each hold its folder; the first
    to finish once freed it for sweeping while the other still read it). :meth:`retire` removes a folder as soon as
    its last user is done (an image id uploaded again). One sweep runs at a time; a folder another request removed
    meanwhile is skipped, not an error.
    """

    def __init__(self, keep_s: float) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="medact-scans-"))
        self.keep_s = keep_s
        self._uses: dict[str, int] = {}
        self._retired: set[str] = set()
        self._lock = threading.Lock()
        self._sweeping = threading.Lock()

    def new(self) -> tuple[str, Path]:
        token = secrets.token_urlsafe(18)
        folder = self.root / token
        with self._lock:
            self._uses[token] = 1
        folder.mkdir(mode=0o700)
        return token, folder

    def hold(self, token: str) -> bool:
        """Take a use of ``token``'s folder; ``False`` when it is gone or retired (then nothing is held)."""
        with self._lock:
            if token in self._retired or not (self.root / token).is_dir():
                return False
            self._uses[token] = self._uses.get(token, 0) + 1
            return True

    def done(self, token: str) -> None:
        """Give back a use of ``token``'s folder: its expiry counts from now (a retired one unused now is removed)."""
        with self._lock:
            left = self._uses.get(token, 1) - 1
            if left > 0:
                self._uses[token] = left
                return
            self._uses.pop(token, None)
            remove = token in self._retired
            self._retired.discard(token)
        if remove:
            shutil.rmtree(self.root / token, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.utime(self.root / token)

    def retire(self, token: str) -> None:
        """Remove ``token``'s folder now, or when its last user is done."""
        with self._lock:
            in_use = self._uses.get(token, 0) > 0
            if in_use:
                self._retired.add(token)
        if not in_use:
            shutil.rmtree(self.root / token, ignore_errors=True)

    def in_use(self, token: str) -> bool:
        with self._lock:
            return self._uses.get(token, 0) > 0

    def get(self, token: str) -> Path | None:
        folder = self.root / token
        return folder if TOKEN.match(token) and folder.is_dir() else None

    def sweep(self) -> None:
        """Remove expired, unused folders; never raises because another request removed a folder (or the root) meanwhile."""
        if not self._sweeping.acquire(blocking=False):
            return  # another request is sweeping
        try:
            for folder in list(self.root.iterdir()):
                try:
                    age = time.time() - folder.stat().st_mtime
                except FileNotFoundError:  # removed meanwhile (a failed upload)
                    continue
                with self._lock:
                    expired = age > self.keep_s and self._uses.get(folder.name, 0) == 0
                if expired:
                    shutil.rmtree(folder, ignore_errors=True)
        except FileNotFoundError:  # the root itself is gone: the server is shutting down
            pass
        finally:
            self._sweeping.release()


def segment_upload(segmenter: Any, upload: Any, folder: Path, limits: UploadLimits) -> dict[str, Any]:
    """Store, identify, (unzip,) segment and export one upload into ``folder``; returns the JSON answer's body."""
    case = upload_case_name(upload.filename)
    scan = store_upload(upload, folder, limits)
    mask, geometry = segmenter.segment(scan)
    image = read_channels(scan)[0][0]  # the views show channel 0 (a multi-channel bundle takes a 4D upload)
    colours = dict(segmenter.colours or default_colours(list(segmenter.names)))
    colours = {int(k): v for k, v in colours.items()}
    dicom = scan.is_dir() or scan.suffix == ".dcm"
    formats = ("nifti", "seg.nrrd", "dicom-seg") if dicom else ("nifti", "seg.nrrd")  # a DICOM input: also its SEG
    extra = {"source": scan, "algorithm": getattr(segmenter, "algorithm", None), "segment_codes": getattr(segmenter, "segment_codes", None)}
    written = export_mask(mask, geometry, folder, case, segmenter.names, formats, colours, **extra)
    views = save_views(folder / "views.npz", image, mask, geometry, colours)
    if scan.is_dir():
        shutil.rmtree(scan)
    else:
        scan.unlink()
    kinds = {"_seg.nii.gz": "nifti", "_seg.ctbl": "colour_table", ".seg.nrrd": "seg_nrrd", "_seg.dcm": "dicom_seg"}
    return {
        "case": case,
        "shape": list(geometry.shape),
        "spacing_mm": [round(float(s), 4) for s in geometry.spacing],
        "labels": _summary(mask, geometry.spacing, dict(segmenter.names), colours),
        "views": views,
        "downloads": {next(k for s, k in kinds.items() if p.name.endswith(s)): p.name for p in written},
    }


def _add_result_routes(app: Any, results: Results) -> None:
    """Downloads (only the exported masks and colour table) and slice views of a result folder."""
    from flask import send_file

    @app.get("/api/results/<token>/<name>")
    def download(token: str, name: str) -> Any:
        folder = results.get(token)
        gone = json_error(404, "No such result (results are removed after a while; segment the scan again).")
        if folder is None or not name.endswith(("_seg.nii.gz", ".seg.nrrd", "_seg.ctbl", "_seg.dcm")) or "/" in name:
            return gone
        try:
            return send_file(folder / name, as_attachment=True, download_name=name)
        except OSError:  # missing, or swept by another request meanwhile
            return gone

    @app.get("/api/results/<token>/view/<axis>/<int:index>.png")
    def view(token: str, axis: str, index: int) -> Any:
        folder = results.get(token)
        if folder is None or axis not in AXES:
            return json_error(404, "No such view.")
        try:
            return app.response_class(slice_png(folder / "views.npz", axis, index), mimetype="image/png")
        except IndexError as err:
            return json_error(404, str(err))
        except OSError:  # missing, or swept by another request meanwhile
            return json_error(404, "No such view (results are removed after a while).")


def _segment_into_result(segmenter: Any, upload: Any, results: Results, limits: UploadLimits, gate: Any) -> Any:
    """One upload into a new result folder: the JSON answer, or a JSON error with the folder removed."""
    from flask import jsonify

    def work(token: str, folder: Path) -> Any:
        with gate:
            body = segment_upload(segmenter, upload, folder, limits)
        base = f"/api/results/{token}"
        body.update(
            id=token,
            expires_in_s=round(results.keep_s),
            downloads={k: f"{base}/{v}" for k, v in body["downloads"].items()},
            view_url=f"{base}/view/{{axis}}/{{index}}.png",
        )
        return jsonify(body)

    return in_new_folder(results, work)


def create_app(
    bundle: str | Path,
    max_upload_mb: float = 500,
    keep_minutes: float = 30,
    workers: int = 1,
    weights: str | Path | None = None,
    max_voxels: int = MAX_UPLOAD_VOXELS,
    max_transfers: int = 4,
    transfer_wait_s: float = 10.0,
    device_overrides: dict[str, Any] | None = None,
    monai_label: bool = False,
    datastore: str | Path | None = None,
    dicomweb: Any = None,
) -> Any:
    """The Flask app; ``app.config["RESULTS"]`` holds the private result root.

    ``monai_label``: also the MONAI Label endpoints 3D Slicer's MONAILabel module uses (:mod:`medseg.web.monailabel`);
    ``datastore``: with them, the annotation loop's on a folder datastore there (:mod:`medseg.web.annotation`); ``dicomweb``
    (a :class:`medseg.web.dicomweb_datastore.PacsDatastoreSpec`): on that PACS instead, ``datastore`` caching what is read.

    ``device_overrides``: bundle ids such as ``{"device": "cuda", "precision": "bf16"}`` (``medseg serve --device``).

    ``max_voxels``: voxels an upload's header may declare; ``max_transfers``: uploads stored or
    segmented at once (others wait ``transfer_wait_s``, then get 503).
    """
    from flask import Flask, request

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 2**20)
    results = app.config["RESULTS"] = Results(keep_minutes * 60)
    served = ServedModel(*_load_for_serving(bundle, weights, device_overrides))
    gate, transfers = threading.BoundedSemaphore(max(1, workers)), TransferGate(max_transfers, transfer_wait_s)
    limits = UploadLimits(int(max_upload_mb * 2**20), int(max_voxels))
    app.before_request(results.sweep)  # expired results go whatever the next request is
    _add_page_routes(app, served, limits, max_upload_mb)

    @app.post("/api/segment")
    def segment() -> Any:
        segmenter = served.segmenter  # one model for the whole request, even if fine-tuned weights replace it meanwhile
        if segmenter is None:
            return json_error(503, f"No model loaded: {served.problem}.")
        with transfers.slot():  # before the body is parsed: Werkzeug spools uploads to disk on first access
            upload = request.files.get("file")
            if upload is None:
                return json_error(400, "Send the scan as the multipart form field 'file'.")
            return _segment_into_result(segmenter, upload, results, limits, gate)

    _add_result_routes(app, results)
    if monai_label:
        from medseg.web.monailabel import add_monai_label_routes

        add_monai_label_routes(app, served, bundle, results, limits, gate, transfers, datastore, device_overrides, dicomweb)
    install_error_handlers(app, max_upload_mb, logger)
    return app


class ServedModel:
    """The segmenter both pages answer with (``None`` with ``problem`` when the bundle could not be loaded).

    Fine-tuned weights replace it whole (:meth:`replace`); a request reads :attr:`segmenter` once and keeps that model
    to its end, so no request mixes two models.
    """

    def __init__(self, segmenter: Any, problem: str = "") -> None:
        self.segmenter, self.problem, self.version = segmenter, problem, 0

    def replace(self, segmenter: Any) -> None:
        """Serve ``segmenter`` from the next request on (``version`` counts the replacements: caches key on it)."""
        self.segmenter, self.problem, self.version = segmenter, "", self.version + 1


def _load_for_serving(bundle: str | Path, weights: str | Path | None, device_overrides: dict[str, Any] | None) -> tuple[Any, str]:
    """``(segmenter, "")``, or ``(None, why)`` when the bundle cannot be loaded: the page then says so, never a 500."""
    from medseg.inference.segmenter import load_segmenter

    try:
        segmenter, problem = load_segmenter(bundle, weights, device_overrides), ""
    except (OSError, ValueError, RuntimeError) as err:
        logger.error("Bundle %s could not be loaded: %s", bundle, err)
        segmenter, problem = None, f"the bundle in {bundle} could not be loaded"
    return segmenter, problem


def _add_page_routes(app: Any, served: ServedModel, limits: UploadLimits, max_upload_mb: float) -> None:
    """``GET /`` (the page) and ``GET /api/health`` (model, labels, limits)."""
    from flask import jsonify

    page = resources.files("medseg").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/")
    def index() -> Any:
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/health")
    def health() -> Any:
        segmenter = served.segmenter
        names = dict(segmenter.names) if segmenter else {}
        return jsonify(
            {
                "status": "ok",
                "model_loaded": segmenter is not None,
                "labels": names,
                "max_upload_mb": max_upload_mb,
                "max_voxels": limits.max_voxels,
                "problem": served.problem or None,
            }
        )


def serve(bundle: str | Path, host: str = "127.0.0.1", port: int = 8001, server: ServerOptions = ServerOptions(), **options: Any) -> None:
    """Run the app on waitress (``server``: :class:`shared.web.ServerOptions`) until interrupted; removes every result on exit. ``options``: :func:`create_app`'s."""
    app = create_app(bundle, **options)
    limit, keep = options.get("max_upload_mb", 500), options.get("keep_minutes", 30)
    banner = lambda port: f"Serving on http://{host}:{port}/ (bundle: {bundle}; uploads up to {limit:g} MB; results kept {keep:g} min)"
    run_server(app, host, port, banner, app.config["RESULTS"].root, server)
