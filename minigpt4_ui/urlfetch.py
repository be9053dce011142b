"""Fetch a URL someone else chose, safely; used by the app (image URLs) and the server (image inputs).

http/https only, a size cap, an overall time limit, redirects followed by hand (at most
MAX_REDIRECTS) with every hop checked, and no connection to a loopback, private, link-local,
multicast or otherwise non-global address unless `UrlPolicy.allow_hosts` names the host or a
network holding its address. The connection goes to the very address that was checked, so a DNS
answer that changes between check and connect (rebinding) cannot slip through.

Failures are `FetchError`s with a `reason` and the facts behind it; each caller words them for
its own audience.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse
from dataclasses import dataclass

import certifi
import urllib3

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 5.0


class FetchError(Exception):
    """Why a URL could not be fetched.

    `reason` is one of: scheme (facts: url, scheme), no_host, bad_port, host_unknown (host),
    private (host), status (status, phrase, netloc), too_large, timeout, redirects, unreachable
    and broken (error: the exception's class name).
    """

    def __init__(self, reason: str, **facts: object):
        super().__init__(reason)
        self.reason = reason
        self.facts = facts


@dataclass(frozen=True)
class UrlPolicy:
    """Which URLs may be fetched; by default only hosts with public (global) addresses.

    `allow_hosts` entries are host names (matched exactly, case-insensitive), IP addresses or
    networks in CIDR form (matched against every address the host resolves to), e.g.
    `("127.0.0.1",)`, `("localhost", "10.0.0.0/8")`; `"*"` allows every host.
    """

    allow_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names, networks = set(), []
        for entry in self.allow_hosts:
            entry = entry.strip().lower()
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
            except ValueError:
                names.add(entry)
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_networks", tuple(networks))

    def allows(self, host: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if "*" in self._names or host.lower() in self._names:
            return True
        if any(address in network for network in self._networks):
            return True
        return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class Fetched:
    """A successful download: the body and its declared media type (lower case, no parameters)."""

    body: bytes
    content_type: str


def fetch(url: str, *, policy: UrlPolicy, max_bytes: int, timeout: float,
          connect_timeout: float = CONNECT_TIMEOUT_S, user_agent: str = "minigpt4-studio") -> Fetched:
    """GET `url` within `timeout` seconds in all and `max_bytes`, checking every hop; raises FetchError."""
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        response = _open(url, policy=policy, timeout=max(0.1, deadline - time.monotonic()),
                         connect_timeout=connect_timeout, user_agent=user_agent)
        try:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urllib.parse.urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise FetchError("status", status=response.status, phrase=response.reason,
                                 netloc=urllib.parse.urlsplit(url).netloc)
            length = response.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise FetchError("too_large")
            body = _read(response, max_bytes=max_bytes, deadline=deadline)
            kind = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
            return Fetched(body=body, content_type=kind)
        finally:
            response.release_conn()
            response.close()
    raise FetchError("redirects")


def _read(response: "urllib3.BaseHTTPResponse", *, max_bytes: int, deadline: float) -> bytes:
    body = bytearray()
    try:
        for chunk in response.stream(65536):
            body += chunk
            if len(body) > max_bytes:
                raise FetchError("too_large")
            if time.monotonic() > deadline:
                raise FetchError("timeout")
    except (urllib3.exceptions.TimeoutError, socket.timeout):
        raise FetchError("timeout") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FetchError("broken", error=type(exc).__name__) from None
    return bytes(body)


def _open(url: str, *, policy: UrlPolicy, timeout: float, connect_timeout: float,
          user_agent: str) -> "urllib3.BaseHTTPResponse":
    """GET one URL (no redirects), connecting to the checked address of its host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise FetchError("scheme", url=url, scheme=parts.scheme)
    if not parts.hostname:
        raise FetchError("no_host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("bad_port") from None
    host = parts.hostname
    address = _checked_address(host, port, policy)
    options = {"timeout": urllib3.Timeout(connect=connect_timeout, read=timeout), "retries": False,
               "maxsize": 1}
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           ca_certs=certifi.where(), cert_reqs="CERT_REQUIRED",
                                           **options)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        return pool.urlopen("GET", target, headers={"Host": parts.netloc.rpartition("@")[2],
                                                    "Accept": "image/*", "User-Agent": user_agent},
                            redirect=False, preload_content=False, assert_same_host=False)
    except urllib3.exceptions.NewConnectionError as exc:  # before TimeoutError: it subclasses it
        raise FetchError("unreachable", error=type(exc).__name__) from None
    except (urllib3.exceptions.TimeoutError, socket.timeout):
        raise FetchError("timeout") from None
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise FetchError("unreachable", error=type(exc).__name__) from None


def _checked_address(host: str, port: int, policy: UrlPolicy) -> str:
    """One address of `host` to connect to; every address it resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise FetchError("host_unknown", host=host) from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not policy.allows(host, ip):
            raise FetchError("private", host=host)
    return addresses[0]
