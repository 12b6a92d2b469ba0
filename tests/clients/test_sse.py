"""The event-stream parser of the clients: the format's line rules, and any chunking gives the same events."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from roomoperator.clients.http import SseEvent, _EventParser

STREAM = (
    "\ufeff: ping\r\n"
    'event: event\r\nid: 7\r\ndata: {"roomId": "r1", "text": "a\u2028b"}\r\n\r\n'
    "data: one\ndata: two\n\n"
    "id: 9\rdata: three\r\r"
    "event: ignored-without-data\n\n"
    "data:no-space\n\n"
).encode()
EVENTS = [
    SseEvent("event", '{"roomId": "r1", "text": "a\u2028b"}', "7"),
    SseEvent("message", "one\ntwo", "7"),
    SseEvent("message", "three", "9"),
    SseEvent("message", "no-space", "9"),
]


def _parse(chunks: list[bytes]) -> list[SseEvent]:
    parser = _EventParser()
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_line_ends_fields_comments_and_ids() -> None:
    assert _parse([STREAM]) == EVENTS


def test_an_unfinished_event_waits_for_its_blank_line() -> None:
    parser = _EventParser()
    assert parser.feed(b"data: half") == []
    assert parser.feed(b"\r") == []
    assert parser.feed(b"\n\r\n") == [SseEvent("message", "half", None)]


@given(st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_events(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    assert _parse([STREAM[a:b] for a, b in itertools.pairwise(points)]) == EVENTS
