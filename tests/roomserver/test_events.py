"""`GET /events` over a socket: `connected`, live events with ids, Last-Event-ID replay, filters, pings."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomserver.api.events import connected_frame, event_frame, ping_frame
from roomserver.domain.events import RoomEvent
from tests.support.roomserver import RoomServerHandle, running_roomserver, upload_artifact

ROOM = "room-ai-lab-01"


async def _frames(response: httpx.Response) -> AsyncIterator[dict[str, str]]:
    """SSE frames as {field: value}; a comment-only frame comes out as {"comment": text}."""
    frame: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line == "":
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            frame["comment"] = line[1:].strip()
        else:
            key, _, value = line.partition(": ")
            frame[key] = value


async def _take(response: httpx.Response, count: int) -> list[dict[str, str]]:
    taken = []
    async for frame in _frames(response):
        taken.append(frame)
        if len(taken) == count:
            break
    return taken


def _payload(frame: dict[str, str]) -> dict[str, Any]:
    envelope: dict[str, Any] = json.loads(frame["data"])
    assert envelope["id"] == frame["id"]
    payload: dict[str, Any] = envelope["payload"]
    return payload


async def test_live_stream_starts_with_connected_then_events(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client,
        client.stream("GET", "/events") as stream,
    ):
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        frames = _frames(stream)
        connected = await anext(frames)
        assert connected["event"] == "connected"
        assert json.loads(connected["data"])["message"] == "Connected to RoomServer events"
        await client.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"})
        join, state = await anext(frames), await anext(frames)
        assert join["event"] == "event"
        assert _payload(join) == {"kind": "ENTITY.JOIN", "data": {"entity": _payload(join)["data"]["entity"]}}
        assert _payload(join)["data"]["entity"]["id"] == "E-agent-1"
        assert _payload(state)["kind"] == "ROOM.STATE"
        assert _payload(state)["data"]["state"] == "active"
        assert int(state["id"]) == int(join["id"]) + 1


async def test_last_event_id_replays_everything_after_it_and_filters_by_room(
    server: RoomServerHandle,
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        await client.post(
            f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"}
        )  # events 1, 2
        await client.put("/rooms/room-other-room/policies", json={"allowResourceCreation": True})  # event 3
        await upload_artifact(client, ROOM, "plan", b"x")  # 4
        await client.post(f"/rooms/{ROOM}/artifacts/promote", json={"name": "plan"})  # 5
        await client.delete(f"/rooms/{ROOM}/artifacts/plan")  # 6
        await client.delete(f"/room/{ROOM}/entities/E-agent-1")  # 7, 8
        async with client.stream(
            "GET", "/events", params={"roomId": ROOM}, headers={"Last-Event-ID": "1"}
        ) as stream:
            frames = await _take(stream, 7)
        kinds = [(f["id"], _payload(f)["kind"]) for f in frames[1:]]
        assert kinds == [
            ("2", "ROOM.STATE"),
            ("4", "ARTIFACT.ADDED"),
            ("5", "ARTIFACT.PROMOTED"),
            ("6", "ARTIFACT.DELETED"),
            ("7", "ENTITY.LEAVE"),
            ("8", "ROOM.STATE"),
        ]
        assert _payload(frames[2])["data"] == {
            "name": "plan",
            "version": 1,
            "sha256": _payload(frames[2])["data"]["sha256"],
        }
        assert _payload(frames[5])["data"] == {"entityId": "E-agent-1"}
        async with client.stream("GET", "/events", headers={"Last-Event-ID": "2"}) as stream:
            third = (await _take(stream, 2))[1]
        policies = {
            "dmVisibilityDefault": "team",
            "allowResourceCreation": True,
            "maxArtifactsPerEntity": 100,
        }
        assert (third["id"], _payload(third)) == (
            "3",
            {"kind": "POLICIES.UPDATED", "data": {"policies": policies}},
        )
        assert json.loads(third["data"])["roomId"] == "room-other-room"


async def test_idle_stream_sends_pings(tmp_path: Path) -> None:
    async with running_roomserver(tmp_path, sse_ping_seconds=0.05) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client,
            client.stream("GET", "/events") as stream,
        ):
            frames = await _take(stream, 3)
    assert [f.get("comment") for f in frames[1:]] == ["ping", "ping"]


@pytest.mark.parametrize(
    ("params", "headers", "code"),
    [({}, {"Last-Event-ID": "abc"}, "INVALID_LAST_EVENT_ID"), ({"roomId": "x"}, {}, "INVALID_ROOM_ID")],
)
async def test_bad_stream_requests_are_400(
    client: httpx.AsyncClient, params: dict[str, str], headers: dict[str, str], code: str
) -> None:
    answer = await client.get("/events", params=params, headers=headers)
    assert (answer.status_code, answer.json()["code"]) == (400, code)


def test_frames_keep_the_reference_wire_bytes() -> None:
    event = RoomEvent(
        43, "room-ai-lab-01", "2026-11-27T03:00:00.123456Z", "ENTITY.LEAVE", {"entityId": "E-agent-1"}
    )
    envelope = (
        '{"id":"43","roomId":"room-ai-lab-01","ts":"2026-11-27T03:00:00.123456Z","type":"event",'
        '"payload":{"kind":"ENTITY.LEAVE","data":{"entityId":"E-agent-1"}}}'
    )
    assert event_frame(event).encode() == f"id: 43\nevent: event\ndata: {envelope}\n\n".encode()
    connected = connected_frame("2026-11-27T03:00:00Z").encode()
    assert connected == (
        b'event: connected\ndata: {"type":"connected","source":"roomserver",'
        b'"timestamp":"2026-11-27T03:00:00Z","message":"Connected to RoomServer events"}\n\n'
    )
    assert ping_frame().encode() == b": ping\n\n"
