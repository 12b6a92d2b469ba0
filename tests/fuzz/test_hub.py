"""Fuzzing the SignalR hub over WebSocket (issue 13): after a valid handshake, drawn messages: records
of every message type with drawn targets (the hub's methods in any case, strangers), invocation ids and
arguments, several records in one message, text that is not JSON or not an object, a record without its
separator, a message past the 32 KiB limit, binary frames.

The properties: each connection ends in completions, a close message or a closed socket within seconds,
never silence and never a server crash (no traceback in the room server's log); an invocation's error is
one of the protocol's own texts; and after every example another client still handshakes and is
answered (`ListEntities`).
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.fuzz.conftest import RUNS, examples
from tests.spec.test_properties import json_values
from tests.support.roomserver import RoomServerProcess

RS = "\x1e"
ROOM = "room-fuzz-hub"
HANDSHAKE = json.dumps({"protocol": "json", "version": 1}) + RS
METHODS = ["Join", "join", "LEAVE", "SendToRoom", "ListEntities", "ListTools", "CallTool", "Nope", ""]
ERROR_TEXTS = ("Failed to invoke", "An unexpected error occurred", "Unknown hub method", "Streaming is not")


def hub_url(server: RoomServerProcess) -> str:
    return server.url.replace("http://", "ws://", 1) + f"/room?access_token={server.token}"


@contextlib.contextmanager
def open_hub(server: RoomServerProcess) -> Iterator[ClientConnection]:
    """A connection to the hub, its handshake done."""
    with connect(hub_url(server), open_timeout=10, close_timeout=2) as ws:
        ws.send(HANDSHAKE)
        answer = ws.recv(timeout=10)  # the handshake's answer, maybe with a ping in the same message
        assert isinstance(answer, str), answer
        assert answer.startswith("{}" + RS), answer
        yield ws


arguments = st.one_of(
    st.lists(json_values, max_size=4),
    st.just([ROOM, {"id": "E-agent-hubfuzz", "kind": "agent"}]),
    st.just([ROOM]),
    st.tuples(st.just(ROOM), st.text(max_size=8), json_values).map(list),
)
records = st.fixed_dictionaries(
    {"type": st.one_of(st.integers(0, 9), st.text(max_size=3), st.none())},
    optional={
        "invocationId": st.one_of(st.text(max_size=6), st.integers(), st.none()),
        "target": st.one_of(st.sampled_from(METHODS), st.text(max_size=10), st.integers()),
        "arguments": st.one_of(arguments, json_values),
        "error": st.text(max_size=8),
        "item": json_values,
    },
).map(json.dumps)
invocations = st.tuples(st.text("abc123", min_size=1, max_size=4), st.sampled_from(METHODS), arguments).map(
    lambda drawn: json.dumps({"type": 1, "invocationId": drawn[0], "target": drawn[1], "arguments": drawn[2]})
)
messages = st.one_of(
    st.lists(st.one_of(invocations, records), min_size=1, max_size=4).map(lambda items: RS.join(items) + RS),
    st.text(max_size=40).map(lambda text: text + RS),  # not JSON, or not an object
    invocations,  # no separator
    st.just("x" * (33 * 1024) + RS),  # past the size limit
    st.binary(max_size=40),
)


def answers(ws: ClientConnection, message: str | bytes) -> tuple[list[dict[str, Any]], bool]:
    """Send `message`; the frames the hub answers until it closes or goes quiet (1 s), and whether the
    socket was closed."""
    frames: list[dict[str, Any]] = []
    try:
        ws.send(message)
        while True:
            data = ws.recv(timeout=1)
            assert isinstance(data, str), data
            frames += [json.loads(record) for record in data.split(RS)[:-1]]
            if frames and frames[-1].get("type") == 7:
                return frames, False
    except TimeoutError:
        return frames, False
    except ConnectionClosed:
        return frames, True


@pytest.mark.parametrize("count", RUNS)
def test_drawn_hub_messages_get_protocol_answers_and_the_hub_serves_others(
    count: int, fuzz_roomserver: RoomServerProcess
) -> None:
    log_start = len(fuzz_roomserver.log())
    outcomes: collections.Counter[str] = collections.Counter()
    bad_errors: list[str] = []
    unexplained: list[str] = []  # an error without the HubException body: a ValueError in a method

    @examples(count)
    @given(st.lists(messages, min_size=1, max_size=3))
    def check(sent: list[str | bytes]) -> None:
        with open_hub(fuzz_roomserver) as ws:
            for message in sent:
                frames, closed = answers(ws, message)
                for frame in frames:
                    outcomes[f"type {frame.get('type')}" + (" error" if frame.get("error") else "")] += 1
                    error = frame.get("error")
                    if (
                        isinstance(error, str)
                        and frame.get("type") == 3
                        and not error.startswith(ERROR_TEXTS)
                    ):
                        bad_errors.append(error[:120])
                    if str(error).startswith("An unexpected error") and "HubException: " not in str(error):
                        unexplained.append(f"{error[:80]} <- {str(message)[:200]}")
                if closed or (frames and frames[-1].get("type") == 7):
                    outcomes["closed"] += 1
                    break
        with open_hub(fuzz_roomserver) as other:  # the hub still serves a well-behaved client
            other.send(
                json.dumps({"type": 1, "invocationId": "1", "target": "ListEntities", "arguments": [ROOM]})
                + RS
            )
            frames: list[dict[str, Any]] = []
            while not any(frame.get("type") == 3 for frame in frames):  # pings may come first
                frames += [json.loads(record) for record in str(other.recv(timeout=10)).split(RS)[:-1]]
            (completion,) = [frame for frame in frames if frame.get("type") == 3]
            assert completion["invocationId"] == "1", completion

    check()
    print(f"\nfuzz hub: {count} connections, {dict(outcomes)}")
    assert unexplained == [], unexplained[:5]
    assert bad_errors == [], bad_errors[:10]
    assert "Traceback" not in fuzz_roomserver.log()[log_start:], fuzz_roomserver.log()[log_start:][-3000:]
