"""Turn the `image` input (a data: URI, an http(s) URL or a file of this server) into a Pillow image.

URLs are fetched safely: http/https only, a size cap, an overall time limit, redirects followed by
hand (at most MAX_REDIRECTS) with every hop checked, and no connection to a loopback, private,
link-local, multicast or otherwise non-global address unless `UrlPolicy.allow_hosts` names the
host or a network holding its address. The connection goes to the very address that was checked,
so a DNS answer that changes between check and connect (rebinding) cannot slip through.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

import certifi
import urllib3
from PIL import Image, ImageOps

MAX_BYTES = 10_000_000  # the JS client's data-URI cap; also plenty for an https image
MAX_PIXELS = 50_000_000  # refuse decompression bombs before decoding them
FETCH_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
MAX_REDIRECTS = 5


class ImageError(ValueError):
    """The image input could not be turned into a picture; the message is shown to the user."""


@dataclass(frozen=True)
class FileRef:
    """An `image` input that named a file of this server's Files API (read directly, no HTTP)."""

    file_id: str


@dataclass(frozen=True)
class UrlPolicy:
    """Which image URLs may be fetched; by default only hosts with public (global) addresses.

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


def load_image(ref: "str | FileRef", *, max_bytes: int = MAX_BYTES, timeout: float = FETCH_TIMEOUT_S,
               policy: UrlPolicy | None = None,
               read_file: Callable[[str], bytes | None] | None = None) -> Image.Image:
    """Fetch or decode `ref` and return it as an upright RGB image; raises ImageError.

    `read_file(file_id)` returns the content of one of this server's files (None if it is gone).
    """
    if isinstance(ref, FileRef):
        raw = read_file(ref.file_id) if read_file else None
        if raw is None:
            raise ImageError(f"could not read the image: the file {ref.file_id} does not exist "
                             "or has expired")
        return decode(raw)
    scheme = ref.split(":", 1)[0].lower() if ":" in ref else ""
    if scheme == "data":
        raw = _decode_data_uri(ref, max_bytes=max_bytes)
    elif scheme in ("http", "https"):
        raw = _fetch(ref, max_bytes=max_bytes, timeout=timeout, policy=policy or UrlPolicy())
    else:
        raise ImageError("could not read the image: expected a data: URI or an http(s) URL")
    return decode(raw)


def decode(raw: bytes) -> Image.Image:
    """Decode image bytes into an upright RGB image; raises ImageError."""
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise ImageError(f"could not read the image: {width}×{height} is more than "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
        image.load()
        return ImageOps.exif_transpose(image).convert("RGB")
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"could not read the image: more than {MAX_PIXELS // 1_000_000} "
                         f"megapixels") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        # Pillow signals "unknown format" and truncated files with these.
        detail = "not an image file" if isinstance(exc, Image.UnidentifiedImageError) else str(exc)
        raise ImageError(f"could not read the image: {detail}") from exc


def _decode_data_uri(ref: str, *, max_bytes: int) -> bytes:
    header, sep, payload = ref.partition(",")
    if not sep:
        raise ImageError("could not read the image: the data URI has no comma before its data")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(f"could not read the image: larger than {max_bytes // 1_000_000} MB")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ImageError("could not read the image: the data URI is not valid base64") from exc
    return urllib.parse.unquote_to_bytes(payload)


def _addresses(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise ImageError(f"could not fetch the image: the host {host} could not be found") from None
    return list(dict.fromkeys(info[4][0] for info in infos))


def _checked_address(host: str, port: int, policy: UrlPolicy) -> str:
    """One address of `host` to connect to; every address must be allowed."""
    addresses = _addresses(host, port)
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not policy.allows(host, ip):
            raise ImageError(f"could not fetch the image: {host} is a loopback, private or "
                             "link-local address; only public image URLs are fetched")
    return addresses[0]


def _open(url: str, *, policy: UrlPolicy, timeout: float) -> "urllib3.BaseHTTPResponse":
    """GET one URL (no redirects), connecting to the checked address of its host."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ImageError("could not fetch the image: only http(s) URLs with a host can be fetched")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ImageError("could not fetch the image: the URL has an invalid port") from None
    host = parts.hostname
    address = _checked_address(host, port, policy)
    options = {"timeout": urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=timeout), "retries": False,
               "maxsize": 1}
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=host, assert_hostname=host,
                                           ca_certs=certifi.where(), cert_reqs="CERT_REQUIRED",
                                           **options)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **options)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return pool.urlopen("GET", target, headers={"Host": parts.netloc.rpartition("@")[2],
                                                "Accept": "image/*", "User-Agent": "minigpt4-server"},
                        redirect=False, preload_content=False, assert_same_host=False)


def _fetch(url: str, *, max_bytes: int, timeout: float, policy: UrlPolicy | None = None) -> bytes:
    """Download an image URL within `timeout` seconds in all and `max_bytes`, checking every hop."""
    policy = policy or UrlPolicy()
    deadline = time.monotonic() + timeout
    try:
        for _ in range(MAX_REDIRECTS + 1):
            response = _open(url, policy=policy, timeout=max(0.1, deadline - time.monotonic()))
            try:
                if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                    url = urllib.parse.urljoin(url, response.headers["Location"])
                    continue
                if response.status != 200:
                    raise ImageError(f"could not fetch the image: HTTP {response.status} from "
                                     f"{urllib.parse.urlsplit(url).netloc}")
                length = response.headers.get("Content-Length", "")
                if length.isdigit() and int(length) > max_bytes:
                    raise ImageError(f"could not fetch the image: larger than {max_bytes // 1_000_000} MB")
                body = bytearray()
                for chunk in response.stream(65536):
                    body += chunk
                    if len(body) > max_bytes:
                        raise ImageError(f"could not fetch the image: larger than "
                                         f"{max_bytes // 1_000_000} MB")
                    if time.monotonic() > deadline:
                        raise ImageError(f"could not fetch the image: not complete within {timeout:g} s")
                return bytes(body)
            finally:
                response.release_conn()
                response.close()
    except (urllib3.exceptions.TimeoutError, socket.timeout) as exc:
        raise ImageError(f"could not fetch the image: no answer within {timeout:g} s") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        raise ImageError(f"could not fetch the image: {type(exc).__name__}") from exc
    raise ImageError(f"could not fetch the image: more than {MAX_REDIRECTS} redirects")
