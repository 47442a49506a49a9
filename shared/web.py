"""What both web servers share (``python -m action serve``, ``python -m medseg serve``): JSON errors and the server loop.

Every failure is JSON ``{"error", "status", ...}``: 413 names the upload limit, 503 with
``Retry-After`` when every transfer slot (:class:`TransferGate`) is taken, other HTTP errors
keep Werkzeug's description, and an unexpected exception answers 500 with an ``error_id`` while the
traceback goes to the server log only.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


class ServerBusy(Exception):
    """Every transfer slot is taken: answer 503 with ``Retry-After``."""


class TransferGate:
    """At most ``slots`` request bodies or fetched links being stored or worked on at once, in all.

    Uploads and link fetches share this one gate, so whatever mix of them arrives, the server never
    holds more than ``slots`` x the upload limit on disk. A request waits up to ``wait_s`` seconds
    for a slot, then gets 503 (:class:`ServerBusy`). Acquire it *before* touching
    ``request.files``/``request.form``: Werkzeug spools a multipart body to disk on first access.

    Args:
        slots: transfers at once (``--max-transfers``).
        wait_s: seconds a request waits for a slot.
    """

    def __init__(self, slots: int, wait_s: float = 10.0) -> None:
        if slots < 1:
            raise ValueError(f"max transfers must be at least 1, got {slots}.")
        self.slots, self.wait_s = slots, wait_s
        self._semaphore = threading.BoundedSemaphore(slots)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        if not self._semaphore.acquire(timeout=self.wait_s):
            raise ServerBusy(f"The server is busy with {self.slots} other uploads or links; try again in a minute.")
        try:
            yield
        finally:
            self._semaphore.release()


def json_error(status: int, message: str, **extra: Any) -> Any:
    """A Flask JSON response ``{"error": message, "status": status, **extra}`` with that status."""
    from flask import jsonify

    response = jsonify({"error": message, "status": status, **extra})
    response.status_code = status
    return response


def install_error_handlers(app: Any, max_upload_mb: float, logger: logging.Logger) -> None:
    """413 naming the limit, other HTTP errors as JSON, and 500 with an ``error_id`` (details only in ``logger``)."""
    from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_: Exception) -> Any:
        return json_error(413, f"The upload is larger than the limit of {max_upload_mb:g} MB.", limit_mb=max_upload_mb)

    @app.errorhandler(ServerBusy)
    def busy(err: ServerBusy) -> Any:
        response = json_error(503, str(err))
        response.headers["Retry-After"] = "30"
        return response

    @app.errorhandler(HTTPException)
    def http_error(err: HTTPException) -> Any:
        return json_error(err.code or 500, err.description or err.name)

    @app.errorhandler(Exception)
    def internal(err: Exception) -> Any:
        error_id = uuid.uuid4().hex[:12]
        logger.exception("Internal error %s", error_id)
        return json_error(500, "Internal error; quote the error id when reporting it.", error_id=error_id)


def run_server(app: Any, host: str, port: int, banner: Callable[[int], str], private_root: Path) -> None:
    """Serve ``app`` on a threaded WSGI server until interrupted (SIGTERM too, via the CLI); then remove ``private_root``."""
    from werkzeug.serving import make_server

    server = make_server(host, port, app, threaded=True)
    print(banner(server.server_port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(private_root, ignore_errors=True)
