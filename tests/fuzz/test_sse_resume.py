"""Fuzzing the room server's event stream resume (issue 13): `GET /events?roomId=` with drawn
`Last-Event-ID` values, and clients that read a few events, drop the connection, let writes happen, and
reconnect from the last id they saw.

The properties: never a 5xx (a bad id is a 400 error object); a resumed client receives exactly the room's
events after its id, in order: none lost, none twice, across every reconnect. The truth is the room's
log replayed from 0 and the room's revision (the id of its newest event).
"""

from __future__ import annotations

import collections
import itertools
import json
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.conftest import RUNS, examples

ROOM = "room-fuzz-sse"
READ = httpx.Timeout(10, read=10)  # a lost event is a read that never ends: failed after 10 s
entity_numbers = itertools.count()


def frames(stream: httpx.Response) -> Iterator[dict[str, str]]:
    """The SSE frames of `stream` (comments skipped), each as its fields."""
    frame: dict[str, str] = {}
    for line in stream.iter_lines():
        if not line:
            if frame:
                yield frame
            frame = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            frame[field] = value.removeprefix(" ")


def revision(client: httpx.Client) -> int:
    return int(client.get(f"/room/{ROOM}/state").json()["revision"])


def read_after(client: httpx.Client, cursor: str, *, until: int, at_most: int) -> list[int]:
    """Connect with `Last-Event-ID: cursor`; the ids of up to `at_most` events, stopping at `until`."""
    seen: list[int] = []
    headers = {"Last-Event-ID": cursor}
    with client.stream("GET", "/events", params={"roomId": ROOM}, headers=headers, timeout=READ) as stream:
        assert stream.status_code == 200, stream.read()
        for frame in frames(stream):
            if frame.get("event") == "connected":
                continue
            seen.append(int(frame["id"]))
            if len(seen) >= at_most or seen[-1] >= until:
                break
    return seen


def write(client: httpx.Client, count: int) -> None:
    """`count` writes to the room: each a join (two events, the join and, the first time, the state)."""
    for _ in range(count):
        entity = f"E-agent-sse{next(entity_numbers)}"
        answer = client.post(f"/room/{ROOM}/join", json={"entityId": entity, "kind": "agent"})
        assert answer.status_code == 201, answer.text


def truth(client: httpx.Client) -> list[int]:
    """Every event id of the room, from a replay of its whole log."""
    last = revision(client)
    return read_after(client, "0", until=last, at_most=1_000_000) if last else []


bad_ids = st.one_of(  # what HTTP/1.1 lets a header carry: no control characters, no edge blanks
    st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=40).map(lambda text: text.strip(" ")),
    st.sampled_from(["²", "-1", "+1", "1 2", "0x10", "1e3", "1.0", "9" * 5000, "18446744073709551616"]),
    st.integers(-(10**30), 10**30).map(str),
)


@pytest.mark.parametrize("count", RUNS)
def test_any_last_event_id_is_served_or_refused_never_a_5xx(count: int, rs_client: httpx.Client) -> None:
    write(rs_client, 1)
    statuses: collections.Counter[int] = collections.Counter()
    failures: list[str] = []

    @examples(count)
    @given(bad_ids)
    def check(value: str) -> None:
        headers = {"Last-Event-ID": value.encode()}
        with rs_client.stream(
            "GET", "/events", params={"roomId": ROOM}, headers=headers, timeout=READ
        ) as answer:
            statuses[answer.status_code] += 1
            if answer.status_code == 200:
                assert next(frames(answer))["event"] == "connected"
            elif answer.status_code >= 500 or (
                answer.status_code >= 400 and "code" not in json.loads(answer.read())
            ):
                failures.append(f"{value[:40]!r}: {answer.status_code}")

    check()
    print(f"\nfuzz Last-Event-ID: {count} values, {dict(statuses)}")
    assert failures == [], failures[:10]


steps = st.lists(st.tuples(st.integers(1, 4), st.integers(0, 3)), min_size=1, max_size=4)
"""A client's life: per connection, how many events it reads before dropping it, and how many writes
happen before it reconnects."""


@pytest.mark.parametrize("count", RUNS)
def test_a_client_that_reconnects_from_its_last_id_loses_and_repeats_nothing(
    count: int, rs_client: httpx.Client
) -> None:
    write(rs_client, 3)
    resumes = 0

    @examples(min(count, 500))  # each example replays the room's whole log, which grows with every one
    @given(st.integers(0, 10**6), steps)
    def check(start_at: int, life: list[tuple[int, int]]) -> None:
        nonlocal resumes
        known = truth(rs_client)
        cursor = 0 if start_at % 5 == 0 else known[start_at % len(known)]  # from 0 or from any event
        start, received = cursor, []
        for reads, writes in life:
            last = revision(rs_client)
            if cursor < last:
                received += read_after(rs_client, str(cursor), until=last, at_most=reads)
                cursor = received[-1]
                resumes += 1
            write(rs_client, writes)
        last = revision(rs_client)
        if cursor < last:  # the client catches up at the end
            received += read_after(rs_client, str(cursor), until=last, at_most=1_000_000)
        assert received == [event for event in truth(rs_client) if event > start]

    check()
    print(f"\nfuzz SSE resume: {min(count, 500)} clients, {resumes} reconnects, no event lost or repeated")
