"""Fetch a URL someone else chose, safely; used by the app (image URLs) and the server (image
inputs, webhooks).

http/https only, a size cap, and one wall-clock deadline covering connect, TLS, headers and body:
a watchdog thread shuts the socket down when the deadline passes or the caller's `cancel` event is
set, so a server that trickles one byte at a time cannot hold a thread (a per-read timeout never
fires against it). Redirects are followed by hand (at most MAX_REDIRECTS) with every hop checked,
and no connection goes to an address that is not globally reachable unicast by IANA's registries
(`is_public`: no loopback, private, link-local, multicast, documentation or reserved address, no
6to4, Teredo or IPv4-compatible form; an IPv4-mapped or NAT64 address counts as the IPv4 address it
reaches), unless `UrlPolicy.allow_hosts` names the host or a network holding its address. The
connection goes to the very address that was checked, so a DNS answer that changes between check
and connect (rebinding) cannot slip through. Name resolution itself is the one step the deadline
cannot cut short; the system resolver's own timeouts bound it.

Failures are `FetchError`s with a `reason` and the facts behind it; each caller words them for
its own audience.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import certifi

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 5.0
_CHUNK = 65536
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _networks(*cidrs: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# Our own tables, not ipaddress's is_global: Python's lag behind IANA's registries (3.11.7 calls
# 192.0.0.8, fec0::1 and 3fff::1 global). Where in doubt an address is refused: image hosts and
# webhook receivers live at ordinary unicast addresses.
# IANA IPv4 Special-Purpose Address Registry, entries not globally reachable (all of
# 192.0.0.0/24, also its two anycast services), plus 6to4 relays, multicast and reserved.
_IPV4_NOT_GLOBAL = _networks(
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4")
# IPv6 unicast is allocated only from 2000::/3, which rules out ULA, link- and site-local,
# multicast, SRv6 SIDs (5f00::/16), discard-only and IPv4-compatible/-translated forms.
_IPV6_GLOBAL_UNICAST = ipaddress.ip_network("2000::/3")
# Inside it: IETF protocol assignments (Teredo, benchmarking, ORCHID, …; all refused), the two
# documentation prefixes and 6to4 (deprecated; its relays reach any IPv4 address).
_IPV6_NOT_GLOBAL = _networks("2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20")
# Outside 2000::/3, yet reaching the IPv4 address in their last 32 bits: judged by that address.
_IPV6_TO_IPV4 = _networks("::ffff:0:0/96", "64:ff9b::/96")  # IPv4-mapped, NAT64


def is_public(address: IPAddress) -> bool:
    """Whether `address` is globally reachable unicast (an IPv4-mapped or NAT64 address: whether
    the IPv4 address it reaches is)."""
    if isinstance(address, ipaddress.IPv4Address):
        return not any(address in network for network in _IPV4_NOT_GLOBAL)
    inner = _embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    return address in _IPV6_GLOBAL_UNICAST and not any(address in network
                                                        for network in _IPV6_NOT_GLOBAL)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if any(address in network for network in _IPV6_TO_IPV4):
        return ipaddress.IPv4Address(address.packed[-4:])
    return None


class FetchError(Exception):
    """Why a URL could not be fetched.

    `reason` is one of: scheme (facts: url, scheme), bad_url, no_host, bad_port, host_unknown
    (host), private (host), status (status, phrase, netloc), too_large, timeout, canceled,
    redirects, unreachable and broken (error: the exception's class name).
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

    def allows(self, host: str, address: IPAddress) -> bool:
        """Whether `host`, resolved to `address`, may be fetched."""
        if "*" in self._names or host.lower() in self._names:
            return True
        return self._listed(address) or is_public(address)

    def _listed(self, address: IPAddress) -> bool:
        if any(address in network for network in self._networks):
            return True
        inner = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
        return inner is not None and self._listed(inner)


@dataclass(frozen=True)
class Fetched:
    """A successful download: the body and its declared media type (lower case, no parameters)."""

    body: bytes
    content_type: str


def fetch(url: str, *, policy: UrlPolicy, max_bytes: int, timeout: float,
          connect_timeout: float = CONNECT_TIMEOUT_S, user_agent: str = "minigpt4-studio",
          cancel: threading.Event | None = None) -> Fetched:
    """GET `url` within `timeout` seconds in all and `max_bytes`, checking every hop; raises FetchError.

    Setting `cancel` ends the fetch at once with reason `canceled`.
    """
    deadline = time.monotonic() + timeout
    for _ in range(MAX_REDIRECTS + 1):
        with _exchange("GET", url, policy=policy, deadline=deadline, cancel=cancel,
                       connect_timeout=connect_timeout,
                       headers={"Accept": "image/*", "User-Agent": user_agent}) as (response, read):
            location = response.getheader("Location")
            if response.status in (301, 302, 303, 307, 308) and location:
                try:
                    url = urllib.parse.urljoin(url, location)
                except ValueError:
                    raise FetchError("bad_url") from None
                continue
            if response.status != 200:
                raise FetchError("status", status=response.status, phrase=response.reason,
                                 netloc=urllib.parse.urlsplit(url).netloc)
            length = response.getheader("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise FetchError("too_large")
            body = read(max_bytes)
            kind = (response.getheader("Content-Type") or "").split(";")[0].strip().lower()
            return Fetched(body=body, content_type=kind)
    raise FetchError("redirects")


def post(url: str, body: bytes, *, headers: dict[str, str], policy: UrlPolicy, timeout: float,
         connect_timeout: float = CONNECT_TIMEOUT_S, cancel: threading.Event | None = None) -> int:
    """POST `body` to `url` within `timeout` seconds in all, without following redirects.

    Returns the answer's status code; raises FetchError.
    """
    with _exchange("POST", url, policy=policy, deadline=time.monotonic() + timeout, cancel=cancel,
                   connect_timeout=connect_timeout, headers=headers, body=body) as (response, _):
        return response.status


def check(url: str, *, policy: UrlPolicy) -> None:
    """Raise FetchError unless `url` is http(s) and its host resolves only to allowed addresses."""
    host, port, _, _ = _split(url)
    _checked_address(host, port, policy)


def is_text(url: str) -> bool:
    """Whether `url` can be sent at all: no unpaired surrogate (U+D800 to U+DFFF)."""
    try:
        url.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _split(url: str) -> tuple[str, int, bool, str]:
    """(host, port, https?, request target) of an http(s) URL; raises FetchError."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        raise FetchError("bad_url") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError("scheme", url=url, scheme=parts.scheme)
    if not host:
        raise FetchError("no_host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise FetchError("bad_port") from None
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return host, port, parts.scheme == "https", target


@contextmanager
def _exchange(method: str, url: str, *, policy: UrlPolicy, deadline: float,
              cancel: threading.Event | None, connect_timeout: float, headers: dict[str, str],
              body: bytes | None = None) -> Iterator[tuple[http.client.HTTPResponse, object]]:
    """One request on a connection of its own, to the checked address of the URL's host.

    Yields the response (headers read) and `read(max_bytes)` for its body; the connection is
    closed on leaving.
    """
    host, port, https, target = _split(url)
    family, address = _checked_address(host, port, policy)
    netloc = urllib.parse.urlsplit(url).netloc.rpartition("@")[2]
    sock = socket.socket(family, socket.SOCK_STREAM)
    reading = False
    try:
        # The watch ends (under the watchdog's lock) before the socket is closed below, so a
        # descriptor is never shut down after it was closed and perhaps reused.
        with _WATCHDOG.watch(deadline, cancel) as watch:
            watch.sock = sock
            sock.settimeout(max(0.01, min(connect_timeout, deadline - time.monotonic())))
            sock.connect(address)
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            if https:
                sock = _tls().wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
                watch.sock = sock
                sock.do_handshake()
            connection = http.client.HTTPConnection(host, port)
            connection.sock = sock  # already connected to the checked address
            connection.request(method, target, body=body, headers={"Host": netloc, **headers})
            response = connection.getresponse()
            watch.raise_if_cut_off()  # a shut-down socket can read as a clean end of headers
            reading = True
            yield response, functools.partial(_read, response, watch)
    except FetchError:
        raise
    except (OSError, http.client.HTTPException) as exc:
        if cancel is not None and cancel.is_set():
            raise FetchError("canceled") from None
        if time.monotonic() >= deadline or isinstance(exc, TimeoutError):
            raise FetchError("timeout") from None
        raise FetchError("broken" if reading else "unreachable", error=type(exc).__name__) from None
    finally:
        sock.close()


def _read(response: http.client.HTTPResponse, watch: "_Watch", max_bytes: int) -> bytes:
    body = bytearray()
    while chunk := response.read(_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise FetchError("too_large")
    watch.raise_if_cut_off()  # a body without a length ends where the watchdog cut it
    if response.length:  # the connection ended before Content-Length bytes arrived
        raise http.client.IncompleteRead(bytes(body), response.length)
    return bytes(body)


@functools.lru_cache(maxsize=1)
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context(cafile=certifi.where())


def _checked_address(host: str, port: int, policy: UrlPolicy) -> tuple[int, tuple]:
    """(family, socket address) to connect to; every address `host` resolves to must be allowed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise FetchError("host_unknown", host=host) from None
    for family, _, _, _, address in infos:
        ip = ipaddress.ip_address(address[0].split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not policy.allows(host, ip):
            raise FetchError("private", host=host)
    return infos[0][0], infos[0][4]


class _Watch:
    """One exchange's deadline, cancel event and current socket (None between sockets)."""

    def __init__(self, deadline: float, cancel: threading.Event | None):
        self.deadline = deadline
        self.cancel = cancel
        self.sock: socket.socket | None = None

    def overdue(self, now: float) -> bool:
        return now >= self.deadline or (self.cancel is not None and self.cancel.is_set())

    def raise_if_cut_off(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise FetchError("canceled")
        if time.monotonic() >= self.deadline:
            raise FetchError("timeout")


class _Watchdog:
    """One thread for every exchange in the process: it shuts down the socket of any exchange
    past its deadline or cancelled, which wakes a read blocked in the kernel at once. It runs
    only while something is watched."""

    TICK_S = 0.05

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: set[_Watch] = set()
        self._running = False

    @contextmanager
    def watch(self, deadline: float, cancel: threading.Event | None) -> Iterator[_Watch]:
        watch = _Watch(deadline, cancel)
        with self._lock:
            self._watched.add(watch)
            if not self._running:
                self._running = True
                threading.Thread(target=self._run, name="urlfetch-watchdog", daemon=True).start()
        try:
            yield watch
        finally:
            # Under the lock, so the socket is never shut down after it was closed (and its
            # descriptor perhaps reused).
            with self._lock:
                self._watched.discard(watch)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._watched:
                    self._running = False
                    return
                now = time.monotonic()
                for watch in self._watched:
                    if watch.sock is not None and watch.overdue(now):
                        try:
                            # The plain socket's shutdown, also for TLS: it acts on the descriptor.
                            socket.socket.shutdown(watch.sock, socket.SHUT_RDWR)
                        except OSError:
                            pass  # not connected yet, or already shut down
            time.sleep(self.TICK_S)


_WATCHDOG = _Watchdog()
