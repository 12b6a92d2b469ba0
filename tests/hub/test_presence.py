"""Presence: the room state shows live sessions, the room's status follows them, a kick closes a session,
a disconnect leaves, and hub activity is on the durable event log (`GET /events`)."""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.hub.client import chat, entity, hub_client
from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle


async def _state(rest: httpx.AsyncClient) -> dict[str, Any]:
    answer = await rest.get(f"/room/{ROOM}/state")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def _presence(state: dict[str, Any]) -> dict[str, tuple[bool, int, bool]]:
    return {e["id"]: (e["connected"], e["sessions"], e["declared"]) for e in state["entities"]}


async def test_live_sessions_show_in_the_room_state(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    await rest.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"})
    await rest.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-2", "kind": "agent"})
    assert _presence(await _state(rest)) == {"E-agent-1": (False, 0, True), "E-agent-2": (False, 0, True)}
    async with hub_client(server.url, server.token) as watcher:
        await watcher.invoke("Join", ROOM, entity("E-watcher", "human"))
        async with (
            hub_client(server.url, server.token) as first,
            hub_client(server.url, server.token) as second,
        ):
            await first.invoke("Join", ROOM, entity("E-agent-1"))
            await second.invoke("Join", ROOM, entity("E-agent-1"))
            assert _presence(await _state(rest)) == {
                "E-agent-1": (True, 2, True),
                "E-agent-2": (False, 0, True),
                "E-watcher": (True, 1, False),  # an unmanaged room is open; the state marks it undeclared
            }
            await second.invoke("Leave", ROOM, "E-agent-1")
            assert _presence(await _state(rest))["E-agent-1"] == (True, 1, True)
        # the entity's last session closed: its leave is published, and presence is gone
        assert (await watcher.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-agent-1"}
        assert _presence(await _state(rest)) == {
            "E-agent-1": (False, 0, True),
            "E-agent-2": (False, 0, True),
            "E-watcher": (True, 1, False),
        }


async def test_the_room_goes_init_active_ended_with_its_sessions(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    assert (await _state(rest))["status"] == "init"
    async with hub_client(server.url, server.token) as alice, hub_client(server.url, server.token) as bob:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        first = await alice.next_event(
            "ENTITY.JOIN"
        )  # also for the room's first joiner (reference skipped it)
        state = await alice.next_event("ROOM.STATE")
        assert first["payload"]["data"]["entity"]["id"] == "E-alice"
        assert state["payload"]["data"]["state"] == "active"
        assert (await _state(rest))["status"] == "active"
        await bob.invoke("Join", ROOM, entity("E-bob"))
        assert (await alice.next_event("ENTITY.JOIN"))["payload"]["data"]["entity"]["id"] == "E-bob"
        await bob.invoke("Leave", ROOM, "E-bob")
        assert (await alice.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-bob"}
        await alice.invoke("Leave", ROOM, "E-alice")
    assert (await _state(rest))["status"] == "ended"


async def test_a_disconnect_publishes_the_leave(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        async with hub_client(server.url, server.token) as bob:
            await bob.invoke("Join", ROOM, entity("E-bob"))
        leave = await alice.next_event("ENTITY.LEAVE")
    assert leave["payload"]["data"] == {"entityId": "E-bob"}
    assert leave["roomId"] == ROOM


async def test_joining_another_room_leaves_the_first(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as alice, hub_client(server.url, server.token) as bob:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        await bob.invoke("Join", ROOM, entity("E-bob"))
        await bob.invoke("Join", "room-other-1", entity("E-bob"))
        assert (await alice.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-bob"}
        assert [e["id"] for e in await alice.invoke("ListEntities", ROOM)] == ["E-alice"]


async def test_removing_a_declared_entity_closes_its_live_session(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    await rest.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"})
    async with (
        hub_client(server.url, server.token) as watcher,
        hub_client(server.url, server.token) as agent,
    ):
        await watcher.invoke("Join", ROOM, entity("E-watcher", "human"))
        await agent.invoke("Join", ROOM, entity("E-agent-1"))
        assert (await rest.delete(f"/room/{ROOM}/entities/E-agent-1")).status_code == 204
        close = await agent.next_frame()
        assert close == {"type": 7, "error": "The entity was removed from the room."}
        assert (await watcher.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-agent-1"}
        assert [e["id"] for e in await watcher.invoke("ListEntities", ROOM)] == ["E-watcher"]
        assert "E-agent-1" not in _presence(await _state(rest))


async def test_hub_activity_is_on_the_durable_event_log(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    async with hub_client(server.url, server.token) as alice, hub_client(server.url, server.token) as bob:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        await bob.invoke("Join", ROOM, entity("E-bob"))
        await alice.invoke("SendToRoom", ROOM, chat("E-alice", "for everyone"))
        await alice.invoke("SendToRoom", ROOM, chat("E-alice", "for bob", channel="@E-bob"))
        assert (await bob.messages.get())["payload"]["text"] == "for everyone"
        assert (await bob.messages.get())["payload"]["text"] == "for bob"
    frames: list[tuple[str, dict[str, Any]]] = []
    async with rest.stream("GET", f"/events?roomId={ROOM}", headers={"Last-Event-ID": "0"}) as stream:
        kind = ""
        async for line in stream.aiter_lines():
            if line.startswith("event: "):
                kind = line.removeprefix("event: ")
            elif line.startswith("data: ") and kind != "connected":
                frames.append((kind, json.loads(line.removeprefix("data: "))))
                if kind == "event" and frames[-1][1]["payload"]["kind"] == "ROOM.STATE" and len(frames) > 3:
                    break
    summary = [
        (k, d["payload"]["kind"] if k == "event" else d["payload"]["payload"]["text"]) for k, d in frames
    ]
    assert summary == [
        ("event", "ENTITY.JOIN"),
        ("event", "ROOM.STATE"),
        ("event", "ENTITY.JOIN"),
        ("message", "for everyone"),  # the direct message is not on the room's log
        ("event", "ENTITY.LEAVE"),
        ("event", "ENTITY.LEAVE"),
        ("event", "ROOM.STATE"),
    ]
    assert frames[3][1]["type"] == "message"
    assert frames[3][1]["payload"]["from"] == "E-alice"


async def test_hub_events_are_by_the_session_s_entity(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))  # ENTITY.JOIN, ROOM.STATE
        await alice.invoke("SendToRoom", ROOM, chat("E-alice", "hello"))  # the message
    actors: list[str | None] = []
    params = {"roomId": ROOM, "withActor": "1"}
    async with rest.stream("GET", "/events", params=params, headers={"Last-Event-ID": "0"}) as stream:
        async for line in stream.aiter_lines():
            if line.startswith("data: ") and '"connected"' not in line:
                actors.append(json.loads(line.removeprefix("data: "))["actor"])
                if len(actors) == 5:  # and the leave, with the room's end
                    break
    assert actors == ["E-alice"] * 5  # not the token's name (`test`): the entity the session is
