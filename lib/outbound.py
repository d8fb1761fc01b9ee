"""Downloading URLs that someone else wrote (catalog image URLs) without letting them reach our own network.

A URL is fetched only over https and only from a host whose every resolved address is public: not loopback,
private, link-local (the metadata server 169.254.169.254), shared, reserved, documentation or multicast, also
when written as a decimal number or hidden in an IPv6 form (IPv4-mapped, 6to4, Teredo, NAT64). The connection
goes to the address that was checked, so a second DNS answer cannot swap it (DNS rebinding); TLS still
verifies the certificate for the URL's host name. A redirect is followed (at most MAX_REDIRECTS) only after
the same check of its target. The body is bounded in bytes and the whole download in time.

Every failure is a FetchError whose message is safe to store and show to whoever wrote the URL: it says the
URL was refused or could not be downloaded, never what answered or how (no status code, no "connection
refused"), so an import cannot be used to scan ports.

`trusted_origins` ("http://127.0.0.1:8000") are exempt from the https and public-address rules: a catalog server
on a developer's machine. Production sets none.

Hand-written on urllib3's public API rather than a library: the maintained SSRF guards are async-only
(safehttpx, for httpx) or pin old urllib3 internals (advocate, last released 2020).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # urllib3 loads with the first fetch
    import urllib3

import ipaddress
import socket
import threading
import time
from collections.abc import Iterable
from urllib.parse import urljoin

MAX_REDIRECTS = 3
REFUSED = "refused: only https URLs of public addresses are fetched"
FAILED = "could not be downloaded"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
_pools_lock = threading.Lock()


class FetchError(Exception):
    """The download was refused or failed; the message is generic and safe to store."""


def is_public(address: str) -> bool:
    """A globally routable unicast address, including every IPv4 address an IPv6 form carries."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    embedded: list[ipaddress.IPv4Address] = []
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            embedded.append(ip.ipv4_mapped)
        if ip.sixtofour:
            embedded.append(ip.sixtofour)
        if ip.teredo:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return all(a.is_global and not a.is_multicast for a in (ip, *embedded))


def fetch(url: str, *, max_bytes: int, timeout_seconds: float, trusted_origins: Iterable[str] = ()) -> bytes:
    """The body of a 200 answer to GET `url` (redirects checked and followed), or FetchError."""
    deadline = time.monotonic() + timeout_seconds
    trusted = {_origin(origin) for origin in trusted_origins}
    for _ in range(MAX_REDIRECTS + 1):
        response = _get(url, trusted, deadline)
        try:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise FetchError(FAILED)
            body = _read(response, max_bytes, deadline)
            response.release_conn()  # read to the end: the kept-alive connection serves the next image
            return body
        finally:
            response.close()  # a no-op once released; else the connection is dropped, never reused half-read
    raise FetchError(FAILED)  # too many redirects


def _origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of a URL, the port filled in."""
    from urllib3.util import parse_url

    parts = parse_url(url.strip())
    scheme = (parts.scheme or "").lower()
    return scheme, (parts.host or "").lower(), parts.port or (443 if scheme == "https" else 80)


def _get(url: str, trusted: set[tuple[str, str, int]], deadline: float):
    import certifi
    import urllib3
    from urllib3.util import parse_url

    try:
        parts = parse_url(url)
    except ValueError:
        raise FetchError(REFUSED) from None
    scheme, host = (parts.scheme or "").lower(), (parts.host or "").lower()
    if scheme not in ("http", "https") or not host:
        raise FetchError(REFUSED)
    port = parts.port or (443 if scheme == "https" else 80)
    name = host.strip("[]")  # an IPv6 literal without its brackets
    is_trusted = (scheme, host, port) in trusted
    if scheme != "https" and not is_trusted:
        raise FetchError(REFUSED)
    try:
        addresses = [str(info[4][0]) for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)]
    except (OSError, UnicodeError):
        raise FetchError(FAILED) from None
    if not addresses or not (is_trusted or all(is_public(a) for a in addresses)):
        raise FetchError(REFUSED)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(FAILED)
    timeout = urllib3.Timeout(connect=remaining, read=remaining)
    address = addresses[0]  # connect to the checked address itself, never to a fresh lookup of `name`
    with _pools_lock:  # one kept-alive pool per checked address and host: a catalog's images share a few sites
        pool = _pools.get((scheme, address, port, name))
        if pool is None:
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=name, assert_hostname=name,
                                                   cert_reqs="CERT_REQUIRED", ca_certs=certifi.where(), maxsize=8)
            else:
                pool = urllib3.HTTPConnectionPool(address, port, maxsize=8)
            _pools[(scheme, address, port, name)] = pool
    default_port = 443 if scheme == "https" else 80
    headers = {"Host": host if port == default_port else f"{host}:{port}", "Accept": "image/*",
               "Accept-Encoding": "identity", "User-Agent": "zipkku-catalog-import"}
    try:
        return pool.urlopen("GET", parts.request_uri, headers=headers, redirect=False, retries=False,
                            timeout=timeout, preload_content=False, assert_same_host=False)
    except urllib3.exceptions.HTTPError:
        raise FetchError(FAILED) from None


def _read(response, max_bytes: int, deadline: float) -> bytes:
    """At most max_bytes, before the deadline: every read waits only for the time left."""
    import urllib3

    length = response.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > max_bytes:
        raise FetchError(f"larger than {max_bytes} bytes")
    chunks: list[bytes] = []
    size = 0
    sock = getattr(getattr(response, "connection", None), "sock", None)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FetchError(FAILED)
            if sock is not None:
                sock.settimeout(remaining)
            chunk = response.read1(64 * 1024)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > max_bytes:
                raise FetchError(f"larger than {max_bytes} bytes")
            chunks.append(chunk)
    except (urllib3.exceptions.HTTPError, OSError):
        raise FetchError(FAILED) from None
