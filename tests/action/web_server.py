"""A real `python -m action serve` (or `python -m medseg serve`) subprocess for the web tests, its temporary files in a known place."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import requests

from shared.distributed import free_port

ROOT = Path(__file__).resolve().parents[2]


class Server:
    """Starts the server with TMPDIR=``tmpdir`` (so its private upload root is inspectable) and stops it with SIGTERM."""

    def __init__(
        self, model: Path | None, tmpdir: Path, max_upload_mb: float = 1.0, extra: tuple[str, ...] = (), module: str = "action"
    ) -> None:
        self.port, self.tmpdir = free_port(), tmpdir
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", module, "serve", "--port", str(self.port), "--max-upload-mb", str(max_upload_mb)]
        flag = "--model" if module == "action" else "--bundle"
        args += [flag, str(model)] if model else [flag, str(tmpdir / "no-such-model")]
        args += list(extra)
        env = {**os.environ, "TMPDIR": str(tmpdir)}
        self.log = open(tmpdir / "server.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                requests.get(self.url + "/api/health", timeout=2)
                return
            except requests.ConnectionError:
                if self.process.poll() is not None:
                    raise RuntimeError((tmpdir / "server.log").read_text(encoding="utf-8")) from None
                time.sleep(0.2)
        raise RuntimeError("server did not start: " + (tmpdir / "server.log").read_text(encoding="utf-8"))

    def upload_root(self) -> Path:
        roots = list(self.tmpdir.glob("medact-uploads-*"))
        assert len(roots) == 1, roots
        return roots[0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()
