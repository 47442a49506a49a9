"""Who may call the servers: real ``python -m action serve`` processes, requests as a browser page elsewhere would send them."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests

from shared.web import AccessPolicy, host_name
from tests.action.web_server import Server


@pytest.fixture(scope="module")
def loopback(tmp_path_factory: pytest.TempPathFactory):
    running = Server(None, tmp_path_factory.mktemp("loopback"))
    yield running
    running.stop()


def test_a_dns_rebinding_request_is_refused(loopback: Server) -> None:
    """A page at evil.example whose name now resolves to 127.0.0.1 sends Host: evil.example: 403, nothing read."""
    answer = requests.get(loopback.url + "/api/health", headers={"Host": f"evil.example:{loopback.port}"}, timeout=10)
    assert answer.status_code == 403 and "is not this server's name" in answer.json()["error"]
    for name in ("localhost", "127.0.0.1"):
        assert requests.get(loopback.url + "/api/health", headers={"Host": f"{name}:{loopback.port}"}, timeout=10).status_code == 200


def test_a_cross_origin_form_post_is_refused(loopback: Server) -> None:
    """A plain multipart form on another site needs no preflight: its Origin gives it away (CSRF)."""
    files = {"file": ("v.mp4", b"not a video", "application/octet-stream")}
    answer = requests.post(loopback.url + "/api/predict", files=files, headers={"Origin": "http://evil.example"}, timeout=10)
    assert answer.status_code == 403 and "Cross-origin" in answer.json()["error"]
    assert requests.post(loopback.url + "/api/predict", files=files, headers={"Origin": "null"}, timeout=10).status_code == 403
    same = requests.post(loopback.url + "/api/predict", files=files, headers={"Origin": loopback.url}, timeout=10)
    assert same.status_code == 503  # past the access rules: this server has no model
    assert requests.post(loopback.url + "/api/predict", files=files, timeout=10).status_code == 503  # no Origin: a client program


def test_beyond_loopback_a_token_is_generated_and_required(tmp_path: Path) -> None:
    running = Server(None, tmp_path, extra=("--host", "0.0.0.0"))
    try:
        deadline = time.monotonic() + 10
        while "Token:" not in (log := (tmp_path / "server.log").read_text(encoding="utf-8")) and time.monotonic() < deadline:
            time.sleep(0.1)
        token = re.search(r"Token: (\S+)", log).group(1)
        health = running.url + "/api/health"
        assert requests.get(health, timeout=10).status_code == 401
        assert requests.get(health, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        assert requests.get(health, headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code == 200
        page = requests.get(f"{running.url}/?token={token}", timeout=10)
        assert page.status_code == 200 and page.cookies.get("medact_token") == token
        assert requests.get(health, cookies={"medact_token": token}, timeout=10).status_code == 200
    finally:
        running.stop()


def test_host_names_and_the_rule_per_bind_address() -> None:
    assert host_name("localhost:8001") == "localhost" and host_name("[::1]:8001") == "::1" and host_name("Example.org") == "example.org"
    loop = AccessPolicy("127.0.0.1")
    assert loop.host_allowed("localhost:1") and loop.host_allowed("[::1]:1") and not loop.host_allowed("evil.example:1")
    named = AccessPolicy("10.0.0.5", ("scans.lab.org",), token="t")
    assert named.host_allowed("10.0.0.5:8001") and named.host_allowed("scans.lab.org") and not named.host_allowed("localhost")
    assert AccessPolicy("0.0.0.0", token="t").host_allowed("anything.example")  # every interface: the token decides
