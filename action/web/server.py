"""``python -m action serve``: a web page and a JSON API that classify uploaded videos (Flask).

Prediction is :class:`action.predict.Predictor` (the CLI's code; no second inference path).

Routes: ``GET /`` (the page), ``POST /api/predict`` (multipart field ``file``), ``POST
/api/predict-url`` (JSON ``{"url": ...}``: the server fetches the link, :mod:`action.web.fetch`), ``GET
/api/health``, ``GET /api/labels``, ``GET /api/openapi.json`` (the API description).
Failures answer JSON ``{"error": ...}``: 413 upload over ``--max-upload-mb`` (with the limit),
422 not a decodable video (the container is probed from the bytes with PyAV's format
allow-list; the client's file name and Content-Type are never used), 503 no model loaded,
500 internal error with an ``error_id`` (details only in the server log).

Safety: each upload is streamed into its own directory (``mkdtemp``, mode 0700) under a
private per-server root, under a random name, and the directory is removed after the
request whatever happens; decoding is bounded in resolution, duration and wall-clock time per request
(:data:`SERVER_LIMITS`; each upload is probed once and decoded once, streaming: a 30-minute video's
timeline is classified in bounded batches, see ``benchmarks/action_long_video.py``); at most
``workers`` predictions run at once (others wait), so one upload cannot stall the server; uploads
and link fetches share one gate of ``max_transfers`` slots (503 when full), so parallel requests
cannot fill the disk; it binds to 127.0.0.1 unless told otherwise. The policy: ``docs/uploads.md``.
"""

from __future__ import annotations

import base64
import io
import logging
import secrets
import shutil
import tempfile
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from action.video.decode import DecodeLimits, VideoError
from shared.web import ServerOptions, TransferGate, install_error_handlers, json_error, run_server

logger = logging.getLogger("action.web.server")
SERVER_LIMITS = DecodeLimits(max_pixels=3840 * 2160, max_duration=30 * 60.0, max_decode_seconds=30.0)


def _thumbnails(frames: Any, count: int = 10) -> list[str]:
    """Up to ``count`` frames (uint8 (T, H, W, 3)) as JPEG data URLs."""
    from PIL import Image

    step = max(1, len(frames) // count)
    urls = []
    for frame in frames[::step][:count]:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=85)
        urls.append("data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode())
    return urls


def analyse(predictor: Any, path: Path, window: float, top_k: int = 5) -> dict[str, Any]:
    """Top-k, thumbnails and (for videos longer than two windows) the per-window timeline: one probe, one decode."""
    result = predictor.analyse(path, top_k, timeline_window=window)
    result.pop("video")
    result["frames"] = _thumbnails(result["frames"])
    return result


def _top_k(text: str, classes: int) -> int | None:
    """The form's ``top_k`` clamped to ``1..classes``; ``None`` when it is not a whole number."""
    try:
        return min(max(int(text.strip()), 1), classes)
    except ValueError:
        return None


def _load(model_dir: Path | None, limits: DecodeLimits, device: str, precision: str) -> tuple[Any, str]:
    from action.predict import Predictor

    if model_dir is None:
        return None, "no model directory given (python -m action serve --model DIR)"
    try:
        return Predictor.load(model_dir, limits, device, precision), ""
    except (OSError, ValueError, RuntimeError) as err:
        logger.error("Model %s could not be loaded: %s", model_dir, err)
        return None, f"the model in {model_dir} could not be loaded"


def _add_info_routes(app: Any, predictor: Any, load_problem: str, max_upload_mb: float) -> None:
    """``GET /``, ``/api/health``, ``/api/labels``, ``/api/openapi.json``."""
    from flask import jsonify

    page = resources.files("action").joinpath("web/index.html").read_text(encoding="utf-8")

    @app.get("/")
    def index() -> Any:
        return page, 200, {"Content-Type": "text/html; charset=utf-8"}

    @app.get("/api/health")
    def health() -> Any:
        return jsonify(
            {
                "status": "ok",
                "model_loaded": predictor is not None,
                "model": predictor.config.model if predictor else None,
                "max_upload_mb": max_upload_mb,
                "problem": load_problem or None,
            }
        )

    @app.get("/api/labels")
    def labels() -> Any:
        if predictor is None:
            return json_error(503, f"No model loaded: {load_problem}.")
        return jsonify({"labels": predictor.classes})

    @app.get("/api/openapi.json")
    def openapi() -> Any:
        return app.response_class(
            resources.files("action").joinpath("web/openapi.json").read_text(encoding="utf-8"), mimetype="application/json"
        )


def _answerer(upload_root: Path, predictor: Any, load_problem: str, gate: Any, transfers: TransferGate, window: float) -> Any:
    """The one way both prediction routes answer: ``answer(read_request, what)`` (what: how an error names the video)."""
    from flask import jsonify

    from action.web.fetch import FetchError

    def answer(read_request: Any, what: str) -> Any:
        """In a transfer slot: ``read_request()`` -> ``(store, top_k)``; store the video in a private folder, analyse it, remove the folder."""
        if predictor is None:
            return json_error(503, f"No model loaded: {load_problem}.")
        with transfers.slot():  # before the body is parsed: Werkzeug spools uploads to disk on first access
            store, top_k = read_request()
            if store is None:
                return top_k  # the request's own 400 answer
            k = _top_k(top_k, len(predictor.classes))
            if k is None:
                return json_error(400, f"top_k must be a whole number from 1 to {len(predictor.classes)}, got {top_k[:40]!r}.")
            workdir = Path(tempfile.mkdtemp(dir=upload_root))
            stored = workdir / secrets.token_hex(16)  # never the client's name: no path tricks reach the disk
            try:
                store(stored)
                with gate:
                    return jsonify(analyse(predictor, stored, window, k))
            except FetchError as err:
                return json_error(err.status, str(err))
            except VideoError as err:
                return json_error(422, "Not a decodable video: " + str(err).replace(str(stored), what))
            finally:
                shutil.rmtree(workdir, ignore_errors=True)

    return answer


def create_app(
    model_dir: str | Path | None,
    max_upload_mb: float = 200,
    limits: DecodeLimits = SERVER_LIMITS,
    window: float = 2.0,
    workers: int = 1,
    allowed_url_hosts: Sequence[str] = (),
    fetch_timeout_s: float = 30.0,
    allowed_url_ports: Sequence[int] = (),
    max_transfers: int = 4,
    transfer_wait_s: float = 10.0,
    device: str = "auto",
    precision: str = "fp32",
) -> Any:
    """The Flask app (its model on ``device`` at ``precision``, see :mod:`shared.devices`). ``app.config["UPLOAD_ROOT"]`` is the private directory uploads and fetched links pass through.

    ``allowed_url_hosts``: host names ``/api/predict-url`` may fetch from although they resolve to private or loopback
    addresses; ``allowed_url_ports``: ports it may fetch from besides 80 and 443; ``fetch_timeout_s``: time budget of one
    link's fetch; ``max_transfers``: uploads and link fetches stored at once, in all (:class:`shared.web.TransferGate`;
    others wait ``transfer_wait_s``, then get 503), so the upload root never holds more than ``max_transfers x max_upload_mb``.
    """
    from flask import Flask, request

    from action.web.fetch import FetchPolicy, fetch_url

    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    app.config["UPLOAD_ROOT"] = Path(tempfile.mkdtemp(prefix="medact-uploads-"))
    predictor, load_problem = _load(Path(model_dir) if model_dir else None, limits, device, precision)
    gate, transfers = threading.BoundedSemaphore(max(1, workers)), TransferGate(max_transfers, transfer_wait_s)
    _add_info_routes(app, predictor, load_problem, max_upload_mb)

    policy = FetchPolicy(
        int(max_upload_mb * 1024 * 1024), fetch_timeout_s, frozenset(h.lower() for h in allowed_url_hosts), frozenset(allowed_url_ports)
    )

    answer = _answerer(app.config["UPLOAD_ROOT"], predictor, load_problem, gate, transfers, window)

    def upload_request() -> tuple[Any, Any]:
        upload = request.files.get("file")
        if upload is None:
            return None, json_error(400, "Send the video as the multipart form field 'file'.")
        return (lambda path: upload.save(path)), request.form.get("top_k", "5")

    def link_request() -> tuple[Any, Any]:
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return None, json_error(400, 'Send JSON {"url": "https://..."} with Content-Type application/json.')
        return (lambda path: fetch_url(body["url"], path, policy)), str(body.get("top_k", 5))

    @app.post("/api/predict")
    def predict() -> Any:
        return answer(upload_request, "the uploaded file")

    @app.post("/api/predict-url")
    def predict_url() -> Any:
        return answer(link_request, "the linked file")

    install_error_handlers(app, max_upload_mb, logger)
    return app


def serve(
    model_dir: str | Path | None, host: str = "127.0.0.1", port: int = 8000, server: ServerOptions = ServerOptions(), **options: Any
) -> None:
    """Run the app on waitress (``server``: :class:`shared.web.ServerOptions`) until interrupted; removes the upload root on exit. ``options``: :func:`create_app`'s."""
    app = create_app(model_dir, **options)
    limit = options.get("max_upload_mb", 200)
    banner = lambda port: f"Serving on http://{host}:{port}/ (model: {model_dir or 'none'}; uploads up to {limit:g} MB)"
    run_server(app, host, port, banner, app.config["UPLOAD_ROOT"], server)
