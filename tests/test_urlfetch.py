"""The safe fetcher: one wall-clock deadline however slowly a server answers, cancel, address policy."""

from __future__ import annotations

import http.server
import ipaddress
import json
import threading
import time

import pytest

from minigpt4_ui.shared import urlfetch
from minigpt4_ui.shared.urlfetch import FetchError, UrlPolicy

from .fault_proxy import wait_for
from .attacks import TrickleServer

LOOPBACK = UrlPolicy(("127.0.0.1",))


@pytest.fixture(scope="module")
def headers_trickle():
    with TrickleServer(phase="headers", interval=0.2) as server:
        yield server


@pytest.fixture(scope="module")
def body_trickle():
    with TrickleServer(phase="body", interval=0.2) as server:
        yield server


def _fetch(url, **options):
    return urlfetch.fetch(url, policy=LOOPBACK, max_bytes=1_000_000, **options)


@pytest.mark.parametrize("trickle", ["headers_trickle", "body_trickle"])
def test_a_trickling_server_is_cut_off_at_the_deadline(request, trickle):
    """A byte every 0.2 s never trips a per-read timeout; the wall-clock deadline still holds."""
    server = request.getfixturevalue(trickle)
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        _fetch(server.url + "/cat.png", timeout=1.0)
    assert caught.value.reason == "timeout"
    assert 0.9 <= time.monotonic() - started < 2.0
    wait_for(lambda: server.open_connections() == 0, 2, "the server to see its connection closed")


def test_cancel_ends_a_fetch_in_progress(headers_trickle):
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    with pytest.raises(FetchError) as caught:
        _fetch(headers_trickle.url + "/cat.png", timeout=30, cancel=cancel)
    assert caught.value.reason == "canceled"
    assert time.monotonic() - started < 1.5


def test_many_trickling_fetches_all_end_by_their_deadline(body_trickle):
    errors = []

    def one():
        try:
            _fetch(body_trickle.url + "/x.png", timeout=1.0)
        except FetchError as exc:
            errors.append(exc.reason)

    threads = [threading.Thread(target=one) for _ in range(32)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == ["timeout"] * 32
    assert time.monotonic() - started < 4
    wait_for(lambda: body_trickle.open_connections() == 0, 2, "every connection to close")


EMBEDDING_LOOPBACK = ["64:ff9b::7f00:1", "64:ff9b:1::7f00:1", "2002:7f00:1::", "::127.0.0.1",
                      "::ffff:0:7f00:1", "::ffff:127.0.0.1", "2001:0:4136:e378:8000:63bf:80ff:fffe"]


@pytest.mark.parametrize("address", EMBEDDING_LOOPBACK)
def test_ipv6_forms_embedding_a_private_ipv4_are_refused(address):
    assert not UrlPolicy().allows(address, ipaddress.ip_address(address))
    with pytest.raises(FetchError) as caught:
        urlfetch.fetch(f"http://[{address}]/a.png", policy=UrlPolicy(), max_bytes=10, timeout=1)
    assert caught.value.reason == "private"


def test_ipv6_forms_embedding_a_public_ipv4_are_allowed():
    assert UrlPolicy().allows("x", ipaddress.ip_address("64:ff9b::808:808"))  # 8.8.8.8 via NAT64
    assert UrlPolicy().allows("x", ipaddress.ip_address("::ffff:8.8.8.8"))
    assert UrlPolicy().allows("x", ipaddress.ip_address("2606:4700:4700::1111"))


# Not globally reachable by IANA's special-purpose registries, though Python 3.11.7's ipaddress
# calls the first five global.
NOT_GLOBAL = {
    "192.0.0.8": "IPv4 dummy address", "192.88.99.1": "6to4 relay anycast", "fec0::1": "site-local",
    "5f00::1": "SRv6 SIDs", "3fff::1": "documentation (3fff::/20)",
    "0.1.2.3": "this network", "10.1.2.3": "private", "100.64.0.1": "shared address space",
    "127.0.0.2": "loopback", "169.254.169.254": "link-local", "172.31.255.255": "private",
    "192.0.0.9": "IETF protocol assignments", "192.0.0.170": "NAT64 discovery",
    "192.0.2.1": "TEST-NET-1", "192.168.0.1": "private", "198.19.255.255": "benchmarking",
    "198.51.100.1": "TEST-NET-2", "203.0.113.1": "TEST-NET-3", "224.0.0.251": "multicast",
    "239.255.255.250": "multicast", "240.0.0.1": "reserved", "255.255.255.255": "broadcast",
    "::": "unspecified", "::1": "loopback", "::ffff:10.0.0.1": "IPv4-mapped private",
    "::ffff:0:808:808": "IPv4-translated", "::8.8.8.8": "IPv4-compatible", "64:ff9b::a00:1": "NAT64 of private",
    "64:ff9b:1::808:808": "local-use NAT64", "100::1": "discard-only", "2001::1": "Teredo",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2": "Teredo", "2001:2::1": "benchmarking",
    "2001:10::1": "ORCHID", "2001:20::1": "ORCHIDv2", "2001:1::1": "PCP anycast",
    "2001:db8::1": "documentation", "2002:808:808::1": "6to4", "fc00::1": "unique local",
    "fd12:3456::1": "unique local", "fe80::1": "link-local", "ff02::1": "multicast",
    "ff0e::1": "global multicast", "4000::1": "unallocated, outside 2000::/3",
}
GLOBAL = ["8.8.8.8", "1.1.1.1", "192.0.1.1", "192.31.196.1", "192.175.48.1", "198.17.255.255",
          "198.20.0.1", "223.255.255.254", "2606:4700:4700::1111", "2001:200::1", "2620:4f:8000::1",
          "2a00:1450:4001:81c::200e", "3ffe::1", "64:ff9b::808:808", "::ffff:1.1.1.1"]


@pytest.mark.parametrize("address", NOT_GLOBAL)
def test_addresses_that_are_not_globally_reachable_are_refused(address):
    assert not UrlPolicy().allows("example.com", ipaddress.ip_address(address)), NOT_GLOBAL[address]
    assert not urlfetch.is_public(ipaddress.ip_address(address)), NOT_GLOBAL[address]


@pytest.mark.parametrize("address", GLOBAL)
def test_globally_reachable_addresses_are_allowed(address):
    assert UrlPolicy().allows("example.com", ipaddress.ip_address(address))


def test_allow_hosts_opens_a_network_also_through_its_ipv6_forms():
    policy = UrlPolicy(("10.0.0.0/8", "fd00::/8"))
    for address in ("10.1.2.3", "::ffff:10.1.2.3", "64:ff9b::a01:203", "fd00::1"):
        assert policy.allows("x", ipaddress.ip_address(address)), address
    assert not policy.allows("x", ipaddress.ip_address("192.168.0.1"))


@pytest.mark.parametrize("url, reason", [("http://[::1/x", "bad_url"), ("ftp://a/b", "scheme"),
                                         ("http:///x", "no_host"), ("http://a:99999/", "bad_port")])
def test_malformed_urls_have_a_reason(url, reason):
    with pytest.raises(FetchError) as caught:
        urlfetch.fetch(url, policy=UrlPolicy(), max_bytes=10, timeout=1)
    assert caught.value.reason == reason


@pytest.fixture
def receiver():
    bodies = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", bodies
    server.shutdown()


def test_post_obeys_the_policy(receiver):
    url, bodies = receiver
    with pytest.raises(FetchError) as caught:
        urlfetch.post(url, b"{}", headers={}, policy=UrlPolicy(), timeout=2)
    assert caught.value.reason == "private" and bodies == []
    assert urlfetch.post(url, b'{"a": 1}', headers={"Content-Type": "application/json"},
                         policy=LOOPBACK, timeout=2) == 204
    assert bodies == [{"a": 1}]


def test_post_to_a_trickling_server_ends_by_its_deadline(headers_trickle):
    started = time.monotonic()
    with pytest.raises(FetchError, match="timeout"):
        urlfetch.post(headers_trickle.url, b"{}", headers={}, policy=LOOPBACK, timeout=0.5)
    assert time.monotonic() - started < 1.5
