"""What both web servers share (``python -m action serve``, ``python -m medseg serve``): JSON errors and the server loop.

Every failure is JSON ``{"error", "status", ...}``: 413 names the upload limit, other HTTP errors
keep Werkzeug's description, and an unexpected exception answers 500 with an ``error_id`` while the
traceback goes to the server log only.
"""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any


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
