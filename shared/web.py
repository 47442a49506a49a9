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
            raise ServerBusy(
                f"The server is busy with {self.slots} other requests (uploads, links or segmentations); try again in a minute."
            )
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
    allow_hosts: tuple[str, ...] = ()
    token: str | None = None


#: host names of this machine's loopback interface
LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "medact_token"


@dataclasses.dataclass(frozen=True)
class AccessPolicy:
    """Who may call a server (the rules Jupyter and MONAI Label follow).

    - **Host**: a request must name this server as the bound address (loopback: ``127.0.0.1``, ``localhost``, ``[::1]``)
      or a name given with ``--allow-host``; any other ``Host`` is 403. A page on another site that rebinds its DNS
      name to 127.0.0.1 sends its own name as ``Host``, so it cannot read this server's answers (DNS rebinding).
      A server bound to every interface (``0.0.0.0``, ``::``) is reached under names it cannot know: it relies on the token.
    - **Origin**: a state-changing request (POST, PUT, PATCH, DELETE) whose ``Origin`` is not this server's is 403: a
      plain HTML form on another site needs no CORS preflight, so without this any page could post scans (CSRF).
    - **Token**: with ``token`` set (required when bound beyond loopback; generated and printed if not given), every
      request carries it as ``Authorization: Bearer <token>`` (MONAI Label's client: ``update_auth``), a ``?token=``
      query (the page's first visit; it then gets an HttpOnly cookie) or that cookie; else 401.
    """

    host: str
    allow_hosts: tuple[str, ...] = ()
    token: str | None = None

    @property
    def any_host(self) -> bool:
        return self.host in ("0.0.0.0", "::", "")

    def host_allowed(self, header: str) -> bool:
        name = host_name(header)
        if self.any_host:
            return True
        allowed = {h.lower().strip("[]") for h in self.allow_hosts} | {self.host.lower().strip("[]")}
        if self.host in LOOPBACK:
            allowed |= set(LOOPBACK)
        return name in allowed


def host_name(header: str) -> str:
    """The name in a ``Host`` header: ``"localhost:8001"`` -> ``"localhost"``, ``"[::1]:8001"`` -> ``"::1"``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def needs_token(host: str) -> bool:
    """A server bound beyond this machine's loopback interface must have a token."""
    return host not in LOOPBACK


def install_access_rules(app: Any, policy: AccessPolicy) -> None:
    """Apply :class:`AccessPolicy` to every request of a Flask ``app`` (403 foreign ``Host`` or ``Origin``, 401 no token)."""
    import hmac
    from urllib.parse import urlsplit

    from flask import request

    def token_of_request() -> str | None:
        header = request.headers.get("Authorization", "")
        for scheme in ("Bearer ", "bearer ", "token "):
            if header.startswith(scheme):
                return header[len(scheme) :].strip()
        return request.args.get("token") or request.cookies.get(TOKEN_COOKIE)

    @app.before_request
    def check_access() -> Any:
        host = request.headers.get("Host", "")
        if not policy.host_allowed(host):
            return json_error(
                403, f"Host {host[:80]!r} is not this server's name; refused (start the server with --allow-host NAME to allow it)."
            )
        origin = request.headers.get("Origin")
        if origin is not None and request.method not in ("GET", "HEAD", "OPTIONS"):
            parts = urlsplit(origin)
            if origin == "null" or parts.netloc.lower() != host.lower():
                return json_error(403, "Cross-origin requests that change state are refused (the page must come from this server).")
        if policy.token is not None:
            given = token_of_request()
            if not given or not hmac.compare_digest(given.encode(), policy.token.encode()):
                return json_error(
                    401, "This server needs its token: send 'Authorization: Bearer <token>', or open the page as /?token=<token>."
                )
        return None

    @app.after_request
    def remember_token(response: Any) -> Any:
        if policy.token is not None and request.args.get("token") == policy.token and request.cookies.get(TOKEN_COOKIE) != policy.token:
            response.set_cookie(TOKEN_COOKIE, policy.token, httponly=True, samesite="Strict")
        return response


def run_server(
    app: Any, host: str, port: int, banner: Callable[[int], str], private_root: Path, options: ServerOptions = ServerOptions()
) -> None:
    """Serve ``app`` until interrupted (SIGTERM too, via the CLI), on waitress or Werkzeug; then remove ``private_root``.

    The :class:`AccessPolicy` of ``host`` and ``options`` guards every request; beyond loopback a token is required and,
    when none was given, one is generated and printed with the address.
    """
    import secrets

    token = options.token or (secrets.token_urlsafe(24) if needs_token(host) else None)
    install_access_rules(app, AccessPolicy(host, tuple(options.allow_hosts), token))
    if token is not None and not options.token:
        given_banner = banner
        banner = lambda bound: (
            f"{given_banner(bound)}\nToken: {token} (open http://{host}:{bound}/?token={token}; clients send Authorization: Bearer <token>)"
        )
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
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also answer requests addressed to this host name (repeatable); others get 403 (DNS rebinding)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="the token clients must send (Authorization: Bearer, or /?token= for the page); required beyond loopback, "
        "generated and printed when not given (default: $MEDACT_SERVER_TOKEN, else none on loopback)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=ServerOptions.max_connections,
        help=f"open connections waitress accepts; each may buffer one upload, so disk <= this x 1.5 x the upload limit (default {ServerOptions.max_connections})",
    )


def server_options(args: Any, max_upload_mb: float) -> ServerOptions:
    """:class:`ServerOptions` from the parsed options; waitress's body limit is 1.5 x the upload limit + 1 MB (multipart overhead: the app answers 413 in JSON)."""
    import os

    token = getattr(args, "token", None) or os.environ.get("MEDACT_SERVER_TOKEN") or None
    return ServerOptions(
        args.server,
        args.threads,
        args.max_connections,
        int(max_upload_mb * 1.5 * 2**20) + 2**20,
        allow_hosts=tuple(getattr(args, "allow_host", None) or ()),
        token=token,
    )
