"""action.web.fetch: links are fetched under the upload's limits, and forged requests are refused before any byte is sent."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from action.video.synthetic import encode_video
from action.web.fetch import FetchError, FetchPolicy, check_link, fetch_url, forbidden_reason
from tests.action.conftest import numbered_frames
from tests.action.link_server import LinkServer


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory):
    video = encode_video(numbered_frames(20), tmp_path_factory.mktemp("linked") / "good.mp4", fps=10)
    server = LinkServer(video)
    yield server
    server.stop()


TIMEOUT_S = 3.0


def loopback_allowed(links: LinkServer) -> FetchPolicy:
    """The policy of a server whose operator allowed the link server (``--allow-url-host 127.0.0.1 --allow-url-port PORT``)."""
    return FetchPolicy(
        max_bytes=2 * 2**20, timeout_s=TIMEOUT_S, allowed_hosts=frozenset({"127.0.0.1"}), allowed_ports=frozenset({links.port})
    )


@pytest.mark.parametrize(
    "address, rule",
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("224.0.0.251", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("100.64.0.1", "not a public"),
        ("::1", "loopback"),
        ("fe80::1%eth0", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("::", "unspecified"),
        # IPv6 addresses that carry an IPv4 address reach that host (tunnels, translators): judged by it
        ("2002:7f00:1::", "carries 127.0.0.1, a loopback"),
        ("2002:a9fe:a9fe::1", "carries 169.254.169.254, a link-local"),
        ("64:ff9b::7f00:1", "carries 127.0.0.1, a loopback"),
        ("64:ff9b::a00:1", "carries 10.0.0.1, a private"),
        ("2001:0:a00:1:8000:63bf:80ff:fffe", "carries 10.0.0.1, a private"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "carries 127.0.0.1, a loopback"),
        ("64:ff9b:1::a00:1", "local-use NAT64"),
    ],
)
def test_every_non_public_address_is_refused_by_name(address: str, rule: str) -> None:
    assert rule in forbidden_reason(address)


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "151.101.1.140", "2001:4860:4860::8888", "::ffff:8.8.8.8", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_public_addresses_pass(address: str) -> None:
    assert forbidden_reason(address) is None


@pytest.mark.parametrize(
    "url, message",
    [
        ("file:///etc/passwd", "Only http and https"),
        ("ftp://example.org/v.mp4", "Only http and https"),
        ("example.org/v.mp4", "Only http and https"),
        ("http://user:secret@example.org/v.mp4", "credentials"),
        ("http://:80/v.mp4", "no host"),
        ("http://example.org:99999/", "port"),
        ("http://example.org/a\r\nHost: evil", "one line"),
        ("", "Send a link"),
    ],
)
def test_malformed_links_are_400(url: str, message: str) -> None:
    with pytest.raises(FetchError, match=message) as caught:
        check_link(url)
    assert caught.value.status == 400


def test_only_ports_80_and_443_unless_the_operator_allows_more(links: LinkServer, tmp_path: Path) -> None:
    before = dict(links.hits)
    open_host = FetchPolicy(max_bytes=2_000_000, allowed_hosts=frozenset({"127.0.0.1"}))  # the host allowed, its port not
    for url in (links.url + "/good.mp4", "http://127.0.0.1:22/", "https://127.0.0.1:8443/v.mp4"):
        with pytest.raises(FetchError, match=r"port \d+ are refused: only ports 80 and 443") as caught:
            fetch_url(url, tmp_path / "v", open_host)
        assert caught.value.status == 403
    with pytest.raises(FetchError, match="port 6379 are refused") as caught:  # a redirect hop is checked like the first link
        fetch_url(f"{links.url}/redirect-to?http://127.0.0.1:6379/", tmp_path / "v", loopback_allowed(links))
    assert links.hits == {**before, "/redirect-to": before.get("/redirect-to", 0) + 1} and not (tmp_path / "v").exists()
    assert fetch_url(links.url + "/good.mp4", tmp_path / "v", loopback_allowed(links)).read_bytes() == links.video_bytes


def test_a_loopback_link_is_403_unless_its_host_is_allowed(links: LinkServer, tmp_path: Path) -> None:
    before = dict(links.hits)
    with pytest.raises(FetchError, match="resolves to 127.0.0.1, a loopback address") as caught:
        fetch_url(links.url + "/good.mp4", tmp_path / "v", FetchPolicy(max_bytes=2_000_000, allowed_ports=frozenset({links.port})))
    assert caught.value.status == 403 and links.hits == before and not (tmp_path / "v").exists()  # refused before any byte was sent
    assert fetch_url(links.url + "/good.mp4", tmp_path / "v", loopback_allowed(links)).read_bytes() == links.video_bytes


def test_redirects_are_followed_and_checked_hop_by_hop(links: LinkServer, tmp_path: Path) -> None:
    assert fetch_url(links.url + "/redirect-good", tmp_path / "a", loopback_allowed(links)).read_bytes() == links.video_bytes
    before = links.hits.get("/good.mp4", 0)
    # the same server under the name "localhost", which the operator did not allow: refused at the redirect
    for target in (f"http://localhost:{links.port}/good.mp4", "http://169.254.169.254/latest/meta-data/", "http://[::ffff:127.0.0.1]/"):
        with pytest.raises(FetchError, match="address") as caught:
            fetch_url(f"{links.url}/redirect-to?{target}", tmp_path / "b", loopback_allowed(links))
        assert caught.value.status == 403
    assert links.hits.get("/good.mp4", 0) == before
    with pytest.raises(FetchError, match="redirects more than 5 times") as caught:
        fetch_url(links.url + "/loop", tmp_path / "c", loopback_allowed(links))
    assert caught.value.status == 400


@pytest.mark.parametrize(
    "path, status, message",
    [
        ("/endless", 413, "larger than the limit of 2 MB"),
        ("/liar", 413, "larger than the limit"),
        ("/drip", 504, "longer than the limit of 3 s"),
        ("/missing", 502, "HTTP 404"),
    ],
)
def test_hostile_answers_are_cut_off(links: LinkServer, tmp_path: Path, path: str, status: int, message: str) -> None:
    start = time.monotonic()
    with pytest.raises(FetchError, match=message) as caught:
        fetch_url(links.url + path, tmp_path / "v", loopback_allowed(links))
    assert caught.value.status == status and time.monotonic() - start < TIMEOUT_S + 2
