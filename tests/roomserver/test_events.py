"""`GET /events` over a socket: `connected`, live events with ids, Last-Event-ID replay, filters, pings, and
each event's actor (kept in the log, shown only with `withActor=1`)."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomserver.api.events import connected_frame, event_frame, ping_frame
from roomserver.domain.events import RoomEvent
from roomserver.storage import repository
from roomserver.storage.database import SCHEMA_VERSION, Database
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


async def _actors(client: httpx.AsyncClient, count: int, **params: str) -> list[dict[str, Any]]:
    """The envelopes of the first `count` stored events of ROOM (replayed from the start)."""
    async with client.stream(
        "GET", "/events", params={"roomId": ROOM, **params}, headers={"Last-Event-ID": "0"}
    ) as stream:
        frames = await _take(stream, count + 1)
    return [json.loads(frame["data"]) for frame in frames[1:]]


async def test_events_keep_who_made_them_and_show_it_only_with_with_actor(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    member = {"X-Entity-Id": "E-agent-1"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
        joined = await client.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"})
        assert joined.status_code == 201  # events 1, 2: by the `test` token
        policies = await client.put(
            f"/rooms/{ROOM}/policies", json={"allowResourceCreation": True}, headers=admin
        )
        assert policies.status_code == 200  # 3: by the `admin` token
        assert (await upload_artifact(client, ROOM, "plan", b"x")).status_code == 201  # 4: `test`
        deleted = await client.delete(f"/rooms/{ROOM}/artifacts/plan", headers=member)
        assert deleted.status_code == 204  # 5: the member named by X-Entity-Id, not its token
        shown = await _actors(client, 5, withActor="1")
        plain = await _actors(client, 5)
    assert [(e["payload"]["kind"], e["actor"]) for e in shown] == [
        ("ENTITY.JOIN", "test"),
        ("ROOM.STATE", "test"),
        ("POLICIES.UPDATED", "admin"),
        ("ARTIFACT.ADDED", "test"),
        ("ARTIFACT.DELETED", "E-agent-1"),
    ]
    # Without the opt-in the envelope is the reference's, key for key.
    assert all(set(e) == {"id", "roomId", "ts", "type", "payload"} for e in plain)
    assert [{k: v for k, v in e.items() if k != "actor"} for e in shown] == plain


async def test_the_actor_needs_the_events_read_scope(tmp_path: Path) -> None:
    async with running_roomserver(tmp_path, scopes=("room:entities:write",)) as server:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as client:
            answer = await client.get("/events", params={"withActor": "1"})
    assert (answer.status_code, answer.json()["code"]) == (403, "INSUFFICIENT_SCOPE")


async def test_a_version_3_database_gains_the_actor_column(tmp_path: Path) -> None:
    path = tmp_path / "roomserver.db"
    database = Database(path)
    await database.open()
    await database.close()
    with sqlite3.connect(path) as conn:  # the events table as version 3 had it, with one event
        conn.execute("ALTER TABLE events DROP COLUMN actor")
        conn.execute(
            "INSERT INTO events (room_id, ts, kind, data) VALUES (?, '2026-01-01T00:00:00Z', ?, ?)",
            (ROOM, "ENTITY.LEAVE", json.dumps({"entityId": "E-agent-1"})),
        )
        conn.execute("PRAGMA user_version=3")
    conn.close()
    migrated = Database(path)
    await migrated.open()
    try:
        (old,) = await migrated.run(repository.events_after, 0, ROOM, limit=10)
    finally:
        await migrated.close()
    assert (old.kind, old.actor) == ("ENTITY.LEAVE", None)
    assert old.envelope(with_actor=True)["actor"] is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    conn.close()


def test_the_actor_is_the_envelope_s_last_key_when_asked() -> None:
    event = RoomEvent(7, ROOM, "2026-11-27T03:00:00Z", "ARTIFACT.DELETED", {"name": "plan"}, "E-agent-1")
    assert event_frame(event).encode() == event_frame(dataclasses.replace(event, actor=None)).encode()
    assert event_frame(event, with_actor=True).encode().endswith(b',"actor":"E-agent-1"}\n\n')
