"""The SSE decoder against the WHATWG rules, whole and split at every byte."""

from __future__ import annotations

import pytest

from minigpt4_ui.replicate_api.sse import Event, iter_events

SAMPLE = (
    "\ufeff: hi\r\n"
    "\r\n"
    "event: output\r\n"
    "id: 1:0\r\n"
    "data: Ünïcödé ✓ 🙂\r\n"
    "\r\n"
    "event: output\n"
    "data:  two spaces\n"
    "data:line two\n"
    "\n"
    "event: done\r"
    "data: {}\r"
    "\r"
).encode()

SAMPLE_EVENTS = [
    Event(event="output", data="Ünïcödé ✓ 🙂", id="1:0"),
    Event(event="output", data=" two spaces\nline two", id="1:0"),
    Event(event="done", data="{}", id="1:0"),
]


def events(text: str | bytes) -> list[Event]:
    return list(iter_events([text.encode() if isinstance(text, str) else text]))


def test_sample_in_one_chunk():
    assert events(SAMPLE) == SAMPLE_EVENTS


@pytest.mark.parametrize("cut", range(1, len(SAMPLE)))
def test_split_at_every_byte_gives_the_same_events(cut):
    assert list(iter_events([SAMPLE[:cut], SAMPLE[cut:]])) == SAMPLE_EVENTS


def test_one_byte_at_a_time():
    assert list(iter_events(SAMPLE[i:i + 1] for i in range(len(SAMPLE)))) == SAMPLE_EVENTS


def test_empty_chunks_are_harmless():
    assert list(iter_events([b"", SAMPLE[:5], b"", SAMPLE[5:], b""])) == SAMPLE_EVENTS


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings(newline):
    text = newline.join(["event: output", "data: a", "", "data: b", "", ""])
    assert events(text) == [Event(event="output", data="a"), Event(data="b")]


def test_crlf_split_between_cr_and_lf_is_one_line_end():
    assert list(iter_events([b"data: a\r", b"\ndata: b\r", b"\n\r", b"\n"])) == [Event(data="a\nb")]


def test_only_one_leading_space_is_removed():
    assert events("data:  x\n\ndata:x\n\ndata: \n\n") == [Event(data=" x"), Event(data="x"), Event(data="")]


def test_value_keeps_later_colons():
    assert events("data: {\"a\": 1}\n\n") == [Event(data='{"a": 1}')]


def test_multiple_data_lines_join_with_newline():
    assert events("data: one\ndata:\ndata: three\n\n") == [Event(data="one\n\nthree")]


def test_comments_are_ignored():
    assert events(": hi\n:408: 408 Request Timeout\ndata: x\n: ping\n\n") == [Event(data="x")]


def test_field_without_colon_has_empty_value():
    assert events("data\ndata\n\n") == [Event(data="\n")]
    assert events("event\ndata: x\n\n") == [Event(event="message", data="x")]


def test_event_without_data_is_not_dispatched_and_does_not_leak():
    assert events("event: ping\nid: 7\n\n\n\ndata: x\n\n") == [Event(data="x", id="7")]


def test_unknown_fields_are_ignored():
    assert events("foo: bar\nDATA: y\ndata: x\n\n") == [Event(data="x")]


def test_id_persists_and_can_be_reset():
    stream = "id: 1\ndata: a\n\ndata: b\n\nid\ndata: c\n\nid: bad\0id\ndata: d\n\n"
    assert [e.id for e in events(stream)] == ["1", "1", "", ""]


def test_no_id_means_none():
    assert events("data: a\n\n")[0].id is None


def test_retry_only_when_all_digits():
    assert events("retry: 3000\ndata: a\n\n") == [Event(data="a", retry=3000)]
    assert events("retry: 3s\ndata: a\n\nretry: -1\ndata: b\n\nretry: ３\ndata: c\n\n") == [
        Event(data="a"), Event(data="b"), Event(data="c")]


def test_retry_belongs_to_one_event():
    assert [e.retry for e in events("retry: 5\ndata: a\n\ndata: b\n\n")] == [5, None]


def test_bom_stripped_only_at_start():
    assert events("\ufeffdata: a\n\n") == [Event(data="a")]
    assert events("data: \ufeffa\n\n") == [Event(data="\ufeffa")]
    # A second BOM is not a BOM: the line becomes an unknown field name.
    assert events("\ufeff\ufeffdata: a\n\n") == []


def test_bom_split_across_chunks():
    bom = "\ufeff".encode()
    assert list(iter_events([bom[:1], bom[1:] + b"data: a\n\n"])) == [Event(data="a")]


def test_trailing_event_without_blank_line_is_not_dispatched():
    assert events("data: a\n\ndata: b\n") == [Event(data="a")]
    assert events("data: a\n\ndata: b") == [Event(data="a")]


def test_invalid_utf8_is_replaced_not_fatal():
    assert events(b"data: a\xffb\n\n") == [Event(data="a\ufffdb")]


def test_events_arrive_before_the_stream_ends():
    def chunks():
        yield b"data: first\n\n"
        raise AssertionError("the first event must be yielded before more is read")

    assert next(iter_events(chunks())) == Event(data="first")
