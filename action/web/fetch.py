"""Fetch a video link for the web server, refusing server-side request forgery before any byte is sent.

:func:`fetch_url` streams ``http``/``https`` links into a file under the same limits as an upload:

- the link: only ``http``/``https``, a host, no credentials (``user:password@``): else 400; only
  ports 80 and 443 unless the operator allowed more (``--allow-url-port``): else 403;
- the host is resolved once and *every* address it resolves to is checked: loopback, private,
  link-local, multicast, reserved, unspecified, shared (100.64/10) and their IPv6 forms,
  including IPv6 addresses that carry an IPv4 one (IPv4-mapped ``::ffff:127.0.0.1``, 6to4
  ``2002::/16``, Teredo ``2001::/32``, NAT64 ``64:ff9b::/96``: judged by the IPv4 address), are refused (403) unless the operator allowed
  that host name (``--allow-url-host``); the connection then goes to the checked address (so a
  second DNS answer cannot swap it: DNS rebinding), with the original name for ``Host`` and TLS;
- redirects are followed by hand, at most :data:`MAX_REDIRECTS`, each hop checked the same way;
- the body is streamed to disk and stopped at the size limit whatever ``Content-Length`` says or
  omits (413); the whole fetch has a time budget, checked between reads (504);
- whether the result is a video is decided afterwards from its content (the caller probes it).

Written here because ``requests``/``urllib`` resolve names again at connect time, follow redirects
without a per-hop address check and offer no total-time budget.
"""

from __future__ import annotations

import dataclasses
import http.client
import ipaddress
import socket
import ssl
import time
from pathlib import Path
from urllib.parse import urljoin, urlsplit

MAX_REDIRECTS = 5
CHUNK = 64 * 1024
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """A link that cannot be fetched; ``status`` is the HTTP status the server answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclasses.dataclass(frozen=True)
class FetchPolicy:
    """Limits of one fetch.

    Args:
        max_bytes: largest body accepted (the upload limit; messages give it in MB of 2**20 bytes, as the server does).
        timeout_s: wall-clock budget of the whole fetch, redirects included.
        allowed_hosts: host names whose addresses are not checked (``--allow-url-host``; the tests'
            loopback server). Compared case-insensitively, without port.
        allowed_ports: ports fetched besides 80 and 443 (``--allow-url-port``): a link to another
            port reaches services that were never meant for the web (mail, databases, admin consoles).
        max_redirects: redirects followed, each checked as the first link.
    """

    max_bytes: int
    timeout_s: float = 30.0
    allowed_hosts: frozenset[str] = frozenset()
    allowed_ports: frozenset[int] = frozenset()
    max_redirects: int = MAX_REDIRECTS


#: NAT64's well-known prefix (RFC 6052): the last 32 bits are the IPv4 host a NAT64 gateway connects to
NAT64 = ipaddress.ip_network("64:ff9b::/96")
#: NAT64's local-use prefix (RFC 8215): translators of this network only; never a public host
NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def carried_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and reaches: IPv4-mapped, 6to4 (``2002::/16``), Teredo (``2001::/32``: server and client), NAT64 (``64:ff9b::/96``).

    A connection to such an address ends at that IPv4 host (through a tunnel or a translator), so it
    is checked as that host: ``2002:7f00:1::`` is 127.0.0.1.
    """
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip.teredo is not None:
        return list(ip.teredo)
    if ip in NAT64:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    return []


def forbidden_reason(address: str) -> str | None:
    """Why ``address`` may not be fetched (e.g. ``"a loopback address"``), or ``None`` for a public one.

    IPv6 addresses that carry an IPv4 address (:func:`carried_ipv4`) are judged by it: the reason
    then names it (``"carries 127.0.0.1, a loopback address"``).
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone id
    carried = carried_ipv4(ip)
    if carried:
        for inner in carried:
            reason = _address_rule(inner)
            if reason is not None:
                return reason if inner == getattr(ip, "ipv4_mapped", None) else f"an address that carries {inner}, {reason}"
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip in NAT64_LOCAL:
        return "a private address (local-use NAT64)"
    return _address_rule(ip)


def _address_rule(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    checks = (
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("unspecified", ip.is_unspecified),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    for name, hit in checks:
        if hit:
            return f"a {name} address"
    if not ip.is_global:  # shared address space 100.64/10, documentation ranges, ...
        return "not a public address"
    return None


def check_link(url: str) -> tuple[str, str, int, str]:
    """``(scheme, host, port, path with query)`` of a link this server may follow; :class:`FetchError` 400 otherwise."""
    if not isinstance(url, str) or not url.strip() or len(url) > 4096 or any(c in url for c in "\r\n\x00"):
        raise FetchError(400, 'Send a link as JSON {"url": "https://..."} (one line, at most 4096 characters).')
    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https"):
        raise FetchError(400, f"Only http and https links are fetched, not {parts.scheme or 'a link without a scheme'!r}.")
    if parts.username is not None or parts.password is not None:
        raise FetchError(400, "Links with credentials (user:password@host) are refused.")
    try:
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    except ValueError:
        raise FetchError(400, "The link's port is not a number from 1 to 65535.") from None
    if not parts.hostname:
        raise FetchError(400, "The link has no host name.")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme.lower(), parts.hostname.lower(), port, path


WEB_PORTS = frozenset({80, 443})


def check_port(port: int, policy: FetchPolicy) -> None:
    """Only the web's ports, 80 and 443, plus what the operator allowed; :class:`FetchError` 403 otherwise."""
    if port not in WEB_PORTS | policy.allowed_ports:
        raise FetchError(
            403,
            f"Links to port {port} are refused: only ports 80 and 443 are fetched (the server's operator can allow more with --allow-url-port).",
        )


def resolve_checked(host: str, port: int, policy: FetchPolicy) -> str:
    """Resolve ``host`` once; every address must be allowed (403 naming the rule); returns the one to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError(400, f"The link's host {host!r} does not resolve.") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if host not in policy.allowed_hosts:
        for address in addresses:
            reason = forbidden_reason(address)
            if reason is not None:
                raise FetchError(
                    403,
                    f"The link's host {host!r} resolves to {address}, {reason}: links to loopback, private, link-local, multicast or reserved addresses are refused.",
                )
    return addresses[0]


def _connect(scheme: str, host: str, port: int, address: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to the checked ``address``, speaking to ``host`` (Host header, TLS name and certificate)."""
    sock = socket.create_connection((address, port), timeout=timeout)
    if scheme == "https":
        sock = ssl.create_default_context().wrap_socket(sock, server_hostname=host)
    connection = (
        http.client.HTTPConnection(host, port, timeout=timeout)
        if scheme == "http"
        else http.client.HTTPSConnection(host, port, timeout=timeout)
    )
    connection.sock = sock  # already connected: http.client will not resolve the name again
    return connection


def fetch_url(url: str, dest: Path, policy: FetchPolicy) -> Path:
    """Stream the body that ``url`` leads to into ``dest``; see the module docstring for what is refused.

    Raises:
        FetchError: 400 bad link or redirect loop, 403 forbidden address, 413 over ``max_bytes``,
            502 the remote answered an error or broke off, 504 over ``timeout_s``.
    """
    deadline = time.monotonic() + policy.timeout_s
    for _ in range(policy.max_redirects + 1):
        scheme, host, port, path = check_link(url)
        check_port(port, policy)
        address = resolve_checked(host, port, policy)
        response, connection = _request(scheme, host, port, address, path, deadline)
        try:
            if response.status in REDIRECTS and response.getheader("Location"):
                url = urljoin(url, response.getheader("Location"))
                continue
            if response.status != 200:
                raise FetchError(502, f"The link answered HTTP {response.status} {response.reason}.")
            return _stream(response, dest, policy, deadline)
        finally:
            connection.close()
    raise FetchError(400, f"The link redirects more than {policy.max_redirects} times.")


def _request(
    scheme: str, host: str, port: int, address: str, path: str, deadline: float
) -> tuple[http.client.HTTPResponse, http.client.HTTPConnection]:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(504, "Fetching the link took longer than the time limit.")
    try:
        connection = _connect(scheme, host, port, address, min(remaining, 10.0))
        connection.request("GET", path, headers={"User-Agent": "medact-serve", "Accept": "*/*", "Accept-Encoding": "identity"})
        return connection.getresponse(), connection
    except TimeoutError:
        raise FetchError(504, "The link's server did not answer within the time limit.") from None
    except (OSError, http.client.HTTPException) as err:
        raise FetchError(502, f"The link's server could not be reached or answered badly ({type(err).__name__}).") from None


def _stream(response: http.client.HTTPResponse, dest: Path, policy: FetchPolicy, deadline: float) -> Path:
    declared = response.getheader("Content-Length")
    if declared and declared.strip().isdigit() and int(declared) > policy.max_bytes:
        raise FetchError(
            413,
            f"The linked file is larger than the limit of {policy.max_bytes / 2**20:g} MB (it declares {int(declared) / 2**20:.1f} MB).",
        )
    total = 0
    with dest.open("wb") as out:
        while True:
            if time.monotonic() > deadline:
                raise FetchError(504, f"Fetching the link took longer than the limit of {policy.timeout_s:g} s.")
            try:
                chunk = response.read1(CHUNK)
            except TimeoutError:
                raise FetchError(504, f"Fetching the link took longer than the limit of {policy.timeout_s:g} s.") from None
            except (OSError, http.client.HTTPException) as err:
                raise FetchError(502, f"The link's server broke off the transfer ({type(err).__name__}).") from None
            if not chunk:
                return dest
            total += len(chunk)
            if total > policy.max_bytes:  # whatever Content-Length claimed, or without one
                raise FetchError(413, f"The linked file is larger than the limit of {policy.max_bytes / 2**20:g} MB.")
            out.write(chunk)
