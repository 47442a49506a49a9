"""A local HTTP server of video links for the link tests: good files and every kind of hostile answer."""

from __future__ import annotations

import contextlib
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class LinkServer:
    """Serves on 127.0.0.1 (``port``, default a random one) until :meth:`stop`. ``hits`` counts requests per path.

    Routes: ``/good.mp4`` (``video``'s bytes), ``/redirect-good`` (302 -> /good.mp4), ``/text.mp4`` (a
    text file), ``/drip`` (one byte every 0.2 s), ``/endless`` (bytes forever, no Content-Length),
    ``/liar`` (declares 100 bytes, sends megabytes chunked), ``/redirect-to?<url>`` (302 to ``url``),
    ``/loop`` (302 to itself), ``/missing`` (404).
    """

    def __init__(self, video: Path, port: int = 0) -> None:
        self.video_bytes = video.read_bytes()
        self.hits: dict[str, int] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                path, _, query = self.path.partition("?")
                owner.hits[path] = owner.hits.get(path, 0) + 1
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client hung up: the tests' hostile cases
                    self._route(path, query)

            def _route(self, path: str, query: str) -> None:
                if path == "/good.mp4":
                    self._send(200, owner.video_bytes, {"Content-Type": "video/mp4"})
                elif path == "/redirect-good":
                    self._send(302, headers={"Location": "/good.mp4"})
                elif path == "/text.mp4":
                    self._send(200, b"my shopping list, not a video\n" * 50, {"Content-Type": "video/mp4"})
                elif path == "/redirect-to":
                    self._send(302, headers={"Location": query})
                elif path == "/loop":
                    self._send(302, headers={"Location": "/loop"})
                elif path == "/drip":
                    self.send_response(200)
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    for _ in range(1000):
                        self.wfile.write(b"x")
                        self.wfile.flush()
                        time.sleep(0.2)
                elif path == "/endless":
                    self.send_response(200)
                    self.end_headers()  # no Content-Length: the body ends when the connection does
                    while True:
                        self.wfile.write(b"\0" * 65536)
                elif path == "/liar":  # claims 100 bytes, then sends megabytes in chunks (which clients must follow)
                    self.send_response(200)
                    self.send_header("Content-Length", "100")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for _ in range(200):
                        self.wfile.write(b"10000\r\n" + b"\0" * 65536 + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self._send(404, b"not here")

        return Handler

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
