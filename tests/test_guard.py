import pytest
from starlette.requests import Request

from minigpt4_ui.app.guard import Guard, LimitError, request_visitor, visitor_address


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


def test_one_running_answer_per_session():
    guard = Guard(per_hour=0)
    with guard.slot("s1", None):
        with pytest.raises(LimitError, match="already have an answer in progress"):
            with guard.slot("s1", None):
                pass
        with guard.slot("s2", None):
            pass
    with guard.slot("s1", None):
        pass


def test_the_slot_is_released_when_the_answer_fails():
    guard = Guard(per_hour=0)
    with pytest.raises(RuntimeError):
        with guard.slot("s1", None):
            raise RuntimeError("backend down")
    with guard.slot("s1", None):
        pass


def test_host_paid_predictions_are_limited_per_visitor_per_hour():
    clock = Clock()
    guard = Guard(per_hour=2, clock=clock)
    for _ in range(2):
        with guard.slot("s1", "1.2.3.4"):
            pass
    with pytest.raises(LimitError, match="2 questions per hour .* about 60 min"):
        with guard.slot("s2", "1.2.3.4"):
            pass
    with guard.slot("s3", "5.6.7.8"):  # another visitor
        pass
    with guard.slot("s1", None):  # the visitor's own token: not counted
        pass
    clock.now += 3600
    with guard.slot("s1", "1.2.3.4"):
        pass


def test_visitors_are_forgotten_after_the_hour():
    """Rotating addresses used to grow the guard without bound."""
    clock = Clock()
    guard = Guard(per_hour=3, clock=clock)
    for n in range(1000):
        with guard.slot("s", f"10.0.{n // 256}.{n % 256}"):
            pass
    assert len(guard.visitors()) == 1000
    clock.now += 3600
    with guard.slot("s", "1.2.3.4"):
        pass
    assert guard.visitors() == ["1.2.3.4"]


@pytest.mark.parametrize("forwarded, hops, expected", [
    ("", 1, "10.0.0.9"),  # no header: the peer
    ("203.0.113.7", 1, "203.0.113.7"),  # what the proxy added
    ("6.6.6.6, 203.0.113.7", 1, "203.0.113.7"),  # the client's own entry is ignored
    ("6.6.6.6, 5.5.5.5, 203.0.113.7", 1, "203.0.113.7"),
    ("6.6.6.6, 203.0.113.7, 10.1.1.1", 2, "203.0.113.7"),  # two trusted proxies
    ("203.0.113.7", 2, "10.0.0.9"),  # fewer entries than proxies: the peer, never a guess
    ("6.6.6.6", 0, "10.0.0.9"),  # no trusted proxy: the header is the client's word
    ("2001:db8:1:2:aaaa::1", 1, "2001:db8:1:2::/64"),  # an IPv6 visitor is their /64
    ("::ffff:203.0.113.7", 1, "203.0.113.7"),
    # A port or brackets do not make another visitor (issue 18).
    ("6.6.6.6, 203.0.113.7:51234", 1, "203.0.113.7"),
    ("[2001:db8:1:2:aaaa::1]:443", 1, "2001:db8:1:2::/64"),
    ("[2001:db8:1:2:aaaa::1]", 1, "2001:db8:1:2::/64"),
    ("2001:db8:1:2:aaaa::1", 1, "2001:db8:1:2::/64"),  # colons of IPv6, not a port
])
def test_the_visitor_is_who_the_trusted_proxy_saw(forwarded, hops, expected):
    assert visitor_address("10.0.0.9", forwarded, hops=hops) == expected


def test_a_comparison_larger_than_the_allowance_is_refused_in_words_and_breaks_no_one():
    """Issue 18: a first-time visitor comparing more contenders than the allowance read an empty
    history (IndexError), and the empty history then broke every visitor's question."""
    clock = Clock()
    guard = Guard(per_hour=3, clock=clock)
    with pytest.raises(LimitError, match="This asks 4 questions at once, and this demo allows 3 per hour"):
        with guard.slot("s", "a", predictions=4):
            pass
    clock.now += 64  # past the sweep, which read every visitor's newest question
    for visitor in ("b", "c", "d"):
        with guard.slot(visitor, visitor):
            pass
    with guard.slot("s", "a", predictions=3):  # the refused visitor still has the whole allowance
        pass


def test_every_x_forwarded_for_line_counts_in_order():
    """Issue 18: only the first line was read, so a forged line of its own beat the limit."""
    lines = [(b"x-forwarded-for", b"10.9.0.1"), (b"x-forwarded-for", b"6.6.6.6, 203.0.113.7:8080")]
    request = Request({"type": "http", "headers": lines, "client": ("10.0.0.9", 5000)})
    assert request_visitor(request, hops=1) == "203.0.113.7"
    assert request_visitor(request, hops=3) == "10.9.0.1"
