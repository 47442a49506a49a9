"""``medact-action serve``: the video page and JSON API (uploads and links)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def cmd_serve(args: argparse.Namespace) -> int:
    """``serve``: run the web page and JSON API until interrupted."""
    import signal

    from action.web.server import serve
    from shared.web import server_options

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM cleans up like Ctrl-C
    serve(
        args.model,
        args.host,
        args.port,
        server=server_options(args, args.max_upload_mb),
        max_upload_mb=args.max_upload_mb,
        workers=args.workers,
        allowed_url_hosts=args.allow_url_host,
        fetch_timeout_s=args.fetch_timeout,
        allowed_url_ports=args.allow_url_port,
        max_transfers=args.max_transfers,
        transfer_wait_s=args.transfer_wait,
        device=args.device,
        precision=args.precision,
    )
    return 0


def add_serve_parser(sub: Any) -> None:
    """The ``serve`` command's arguments."""
    from shared.devices import add_device_arguments
    from shared.web import add_server_arguments

    p = sub.add_parser("serve", help="web page + JSON API: upload a video, see the predicted action")
    p.add_argument("--model", type=Path, help="trained model folder (make serve gives the demo's; without one the page answers 503)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (0: any free port; default 8000)")
    p.add_argument("--max-upload-mb", type=float, default=200, help="upload size limit in MB (default 200)")
    p.add_argument("--workers", type=int, default=1, help="predictions running at once (default 1)")
    p.add_argument(
        "--allow-url-host",
        action="append",
        default=[],
        metavar="HOST",
        help="a host name links may be fetched from although it resolves to a private or loopback address (repeatable)",
    )
    p.add_argument(
        "--allow-url-port",
        action="append",
        default=[],
        type=int,
        metavar="PORT",
        help="a port links may be fetched from besides 80 and 443 (repeatable; default: none)",
    )
    p.add_argument("--fetch-timeout", type=float, default=30.0, help="seconds one video link may take to fetch (default 30)")
    p.add_argument(
        "--max-transfers",
        type=int,
        default=4,
        help="uploads and link fetches handled at once, in all; more wait --transfer-wait s, then get 503 (default 4: at most 4 x --max-upload-mb on disk)",
    )
    p.add_argument(
        "--transfer-wait", type=float, default=10.0, help="seconds a request waits for a free transfer slot before 503 (default 10)"
    )
    add_device_arguments(p)
    add_server_arguments(p)
    p.set_defaults(func=cmd_serve)
