"""What both web servers share (``python -m action serve``, ``python -m medseg serve``): JSON errors and the server loop.

Every failure is JSON ``{"error", "status", ...}``: 413 names the upload limit, 503 with
``Retry-After`` when every transfer slot (:class:`TransferGate`) is taken, other HTTP errors
keep Werkzeug's description, and an unexpected exception answers 500 with an ``error_id`` while the
traceback goes to the server log only.
"""

from __future__ import annotations

import contextlib
import dataclasses
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


@dataclasses.dataclass(frozen=True)
class ServerOptions:
    """How the WSGI server runs (``--server``, ``--threads``, ``--max-connections``).

    Args:
        server: ``"waitress"`` (the default: a production WSGI server, pure Python, on every OS) or
            ``"werkzeug"`` (Flask's development server, for debugging; one thread per request).
        threads: waitress worker threads (requests handled at once; the gates below them decide
            how many analyses and transfers run).
        max_connections: open connections waitress accepts; each may buffer one request body, so
            the disk a burst of uploads can take is ``max_connections x max_body_bytes``.
        max_body_bytes: waitress refuses (413) a body above this while reading it; set above the
            app's own limit so that a body just over it still gets the app's JSON answer.
        channel_timeout_s: an idle connection is closed after this (slow clients cannot hold one).
        recv_bytes: bytes waitress reads from a socket at once (64 KiB: fewer wake-ups per upload than its 8 KiB default).
    """

    server: str = "waitress"
    threads: int = 8
    max_connections: int = 32
    max_body_bytes: int = 1 << 30
    channel_timeout_s: float = 60.0
    recv_bytes: int = 65536


def run_server(
    app: Any, host: str, port: int, banner: Callable[[int], str], private_root: Path, options: ServerOptions = ServerOptions()
) -> None:
    """Serve ``app`` until interrupted (SIGTERM too, via the CLI), on waitress or Werkzeug; then remove ``private_root``."""
    if options.server == "werkzeug":
        from werkzeug.serving import make_server

        server = make_server(host, port, app, threaded=True)
        serve_forever, bound_port, close = server.serve_forever, server.server_port, server.server_close
    elif options.server == "waitress":
        from waitress.server import create_server

        server = create_server(
            app,
            host=host,
            port=port,
            threads=options.threads,
            connection_limit=options.max_connections,
            max_request_body_size=options.max_body_bytes,
            channel_timeout=options.channel_timeout_s,
            recv_bytes=options.recv_bytes,
            ident="medact",
            clear_untrusted_proxy_headers=True,
        )
        serve_forever, bound_port, close = server.run, server.effective_port, server.close
    else:
        raise ValueError(f"--server must be waitress or werkzeug, got {options.server!r}.")
    print(banner(bound_port), flush=True)
    try:
        serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        close()
        shutil.rmtree(private_root, ignore_errors=True)


def add_server_arguments(parser: Any) -> None:
    """The WSGI server's command-line options, shared by both ``serve`` commands."""
    parser.add_argument(
        "--server",
        choices=("waitress", "werkzeug"),
        default="waitress",
        help="WSGI server: waitress (production, default) or werkzeug (Flask's development server, for debugging)",
    )
    parser.add_argument(
        "--threads", type=int, default=ServerOptions.threads, help=f"waitress worker threads (default {ServerOptions.threads})"
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=ServerOptions.max_connections,
        help=f"open connections waitress accepts; each may buffer one upload, so disk <= this x 1.5 x the upload limit (default {ServerOptions.max_connections})",
    )


def server_options(args: Any, max_upload_mb: float) -> ServerOptions:
    """:class:`ServerOptions` from the parsed options; waitress's body limit is 1.5 x the upload limit + 1 MB (multipart overhead: the app answers 413 in JSON)."""
    return ServerOptions(args.server, args.threads, args.max_connections, int(max_upload_mb * 1.5 * 2**20) + 2**20)
