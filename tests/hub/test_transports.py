"""The hub's HTTP transports, long polling and Server-Sent Events: the official JavaScript client forced to
each (the same interop script as WebSockets), and the wire as ASP.NET Core SignalR speaks it (first poll,
poll timeout, 204 once closed, DELETE, wrong token, limits, the SSE stream's framing)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from roomserver.hub import protocol
from roomserver.hub.transports import sse_event
from tests.hub.client import RS, chat, entity, hub_client, ws_url
from tests.hub.conftest import ROOM
from tests.hub.nodejs import run_interop
from tests.support.roomserver import RoomServerHandle, running_roomserver, start_roomserver_process


@pytest.mark.parametrize("transport", ["LongPolling", "ServerSentEvents"])
async def test_the_official_javascript_client_on_each_http_transport(
    server: RoomServerHandle, transport: str
) -> None:
    await run_interop(server, transport)


# --- the wire, with httpx ----------------------------------------------------------------------------------


HANDSHAKE = json.dumps({"protocol": "json", "version": 1}) + RS


def _frames(body: str) -> list[dict[str, Any]]:
    return [json.loads(record) for record in body.split(RS)[:-1]]


class Poller:
    """A long-polling connection driven by hand: `poll`, `post` and `delete` return the raw answers."""

    def __init__(self, http: httpx.AsyncClient, token: str):
        self.http = http
        self.url = f"/room?id={token}"

    async def poll(self) -> httpx.Response:
        return await self.http.get(self.url)

    async def post(self, *frames: dict[str, Any]) -> httpx.Response:
        return await self.http.post(self.url, content="".join(json.dumps(f) + RS for f in frames))

    async def delete(self) -> httpx.Response:
        return await self.http.delete(self.url)

    async def frames(self) -> list[dict[str, Any]]:
        """The next poll's messages (it must answer 200)."""
        answer = await self.poll()
        assert answer.status_code == 200, answer.text
        return _frames(answer.text)

    async def completion(self) -> dict[str, Any]:
        """Poll until a completion arrives (client events before it are skipped)."""
        while True:
            for frame in await self.frames():
                if frame["type"] == 3:
                    return frame


@contextlib.asynccontextmanager
async def long_polling(server: RoomServerHandle) -> AsyncIterator[Poller]:
    """Negotiate (v1), the first poll (200, empty, at once), the handshake and its answer."""
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http:
        answer = await http.post("/room/negotiate?negotiateVersion=1")
        poller = Poller(http, answer.json()["connectionToken"])
        first = await poller.poll()
        assert (first.status_code, first.content) == (200, b"")
        assert (await http.post(poller.url, content=HANDSHAKE)).status_code == 200
        assert await poller.frames() == [{}]
        yield poller


async def test_a_long_poll_answers_empty_at_its_timeout_then_204_once_deleted(tmp_path: Path) -> None:
    async with (
        running_roomserver(tmp_path / "data", hub_long_poll_timeout_seconds=0.2) as server,
        long_polling(server) as poller,
    ):
        timed_out = await poller.poll()
        assert (timed_out.status_code, timed_out.content) == (200, b"")
        await poller.post(_invoke("1", "Join", ROOM, entity("E-alice")))
        assert (await poller.completion())["result"][0]["id"] == "E-alice"
        outstanding = asyncio.create_task(poller.poll())
        deleted = await poller.delete()
        assert deleted.status_code == 202
        assert (await outstanding).status_code == 204  # the latest poll is completed with 204
        assert (await poller.poll()).status_code == 204
        gone = await poller.post({"type": 6})
        assert (gone.status_code, gone.json()["code"]) == (404, "CONNECTION_NOT_FOUND")


async def test_a_newer_poll_ends_the_outstanding_one_with_204(server: RoomServerHandle) -> None:
    async with long_polling(server) as poller:
        older = asyncio.create_task(poller.poll())
        while not older.done():  # until a newer poll reached the server after the older one
            newer = asyncio.create_task(poller.poll())
            done, _ = await asyncio.wait([older], timeout=0.5)
            if not done:
                newer.cancel()
        assert older.result().status_code == 204
        await poller.post(_invoke("1", "ListEntities", ROOM))
        assert (await newer).status_code == 200


async def test_the_connection_id_needs_its_own_token(server: RoomServerHandle) -> None:
    async with long_polling(server) as poller:
        other = {"Authorization": f"Bearer {server.admin_token}"}
        for method in ("GET", "POST", "DELETE"):
            answer = await poller.http.request(method, poller.url, headers=other, content=b"{}" + RS.encode())
            assert (answer.status_code, answer.json()["code"]) == (403, "PERM_DENIED"), method
        anonymous = await poller.http.get(poller.url, headers={"Authorization": ""})
        assert anonymous.status_code == 401
        unknown = await poller.http.get("/room?id=no-such-connection")
        assert (unknown.status_code, unknown.json()["code"]) == (404, "CONNECTION_NOT_FOUND")
        missing = await poller.http.post("/room", content=HANDSHAKE)
        assert (missing.status_code, missing.json()["code"]) == (400, "INVALID_REQUEST")
        # a negotiated id another token tries to claim first stays its owner's
        token = (await poller.http.post("/room/negotiate?negotiateVersion=1")).json()["connectionToken"]
        assert (await poller.http.get(f"/room?id={token}", headers=other)).status_code == 403
        assert (await poller.http.get(f"/room?id={token}")).status_code == 200
        assert len(token) >= 22  # 128 random bits, URL-safe


async def test_a_send_past_32_kb_is_413_and_closes_with_the_reason(server: RoomServerHandle) -> None:
    async with long_polling(server) as poller:
        big = {"from": "E-alice", "payload": {"text": "x" * protocol.MAX_MESSAGE_BYTES}}
        answer = await poller.post(_invoke(None, "SendToRoom", ROOM, big))
        assert (answer.status_code, answer.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
        assert await poller.frames() == [
            {
                "type": 7,
                "error": "Connection closed with an error. The maximum message size of 32768B was exceeded.",
            }
        ]
        assert (await poller.poll()).status_code == 204


async def test_a_poller_that_does_not_poll_is_dropped_when_its_queue_overflows(tmp_path: Path) -> None:
    async with (
        running_roomserver(tmp_path / "data", hub_max_queued_bytes=8192) as server,
        long_polling(server) as poller,
        hub_client(server.url, server.admin_token) as talker,
    ):
        await poller.post(_invoke("1", "Join", ROOM, entity("E-slow")))
        await poller.completion()
        await talker.invoke("Join", ROOM, entity("E-talker"))
        for n in range(5):  # 5 x 2 KB messages the poller does not read, over its 8 KB bound
            await talker.invoke("SendToRoom", ROOM, chat("E-talker", f"{n}" * 2048))
        assert (await talker.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-slow"}
        assert await poller.frames() == [
            {"type": 7, "error": "The client does not read its messages: outgoing buffer full."}
        ]
        assert (await poller.poll()).status_code == 204


async def test_a_long_poller_that_stops_polling_is_timed_out_and_leaves(tmp_path: Path) -> None:
    async with (
        running_roomserver(
            tmp_path / "data", hub_keepalive_seconds=0.05, hub_disconnect_timeout_seconds=0.3
        ) as server,
        hub_client(server.url, server.admin_token) as watcher,
        long_polling(server) as poller,
    ):
        await watcher.invoke("Join", ROOM, entity("E-watcher"))
        await poller.post(_invoke("1", "Join", ROOM, entity("E-gone")))
        await watcher.next_event("ENTITY.JOIN")
        # no poll for over 0.3 s: the connection is closed, its session left; pings do not keep it
        assert (await watcher.next_event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-gone"}
        assert (await poller.poll()).status_code == 204


async def test_removing_a_declared_entity_closes_its_long_polling_session(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    await rest.post(f"/room/{ROOM}/join", json={"entityId": "E-agent-1", "kind": "agent"})
    async with long_polling(server) as poller:
        await poller.post(_invoke("1", "Join", ROOM, entity("E-agent-1")))
        await poller.completion()
        state = (await rest.get(f"/room/{ROOM}/state")).json()
        assert [(e["id"], e["connected"]) for e in state["entities"]] == [("E-agent-1", True)]
        assert (await rest.delete(f"/room/{ROOM}/entities/E-agent-1")).status_code == 204
        frames: list[dict[str, Any]] = []
        while not frames or frames[-1]["type"] != 7:
            frames += await poller.frames()
        assert frames[-1] == {"type": 7, "error": "The entity was removed from the room."}
        assert (await poller.poll()).status_code == 204


def _invoke(invocation_id: str | None, target: str, *arguments: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": 1, "target": target, "arguments": list(arguments)}
    if invocation_id is not None:
        frame["invocationId"] = invocation_id
    return frame


# --- Server-Sent Events ------------------------------------------------------------------------------------


def test_an_sse_event_carries_each_line_of_its_payload_as_a_data_line() -> None:
    assert sse_event('{"type":6}' + RS) == 'data: {"type":6}\x1e\r\n\r\n'
    assert sse_event("a\nb\r\nc\rd") == "data: a\r\ndata: b\r\ndata: c\r\ndata: d\r\n\r\n"


async def test_the_sse_stream_frames_each_message_and_sends_by_post(server: RoomServerHandle) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        auth = {"Authorization": f"Bearer {server.token}"}
        token = (await http.post("/room/negotiate?negotiateVersion=1", headers=auth)).json()[
            "connectionToken"
        ]
        url = f"/room?id={token}"
        stream_headers = {"Accept": "text/event-stream"}
        async with http.stream("GET", f"{url}&access_token={server.token}", headers=stream_headers) as stream:
            assert stream.status_code == 200
            assert stream.headers["content-type"].startswith("text/event-stream")
            assert stream.headers["cache-control"] == "no-cache"
            chunks = stream.aiter_text()
            assert await anext(chunks) == ":\r\n"
            second = await http.get(url, headers={**auth, **stream_headers})
            assert (second.status_code, second.json()["code"]) == (409, "CONFLICT")
            assert (await http.delete(url, headers=auth)).status_code == 400
            assert (await http.post(url, headers=auth, content=HANDSHAKE)).status_code == 200
            assert await anext(chunks) == "data: {}\x1e\r\n\r\n"
            join = _invoke("1", "Join", ROOM, entity("E-sse"))
            await http.post(url, headers=auth, content=json.dumps(join) + RS)
            received = ""
            while '"type":3' not in received:
                received += await anext(chunks)
            events = [e for e in received.split("\r\n\r\n") if e]
            assert all(e.startswith("data: ") and e.count("data: ") == 1 for e in events)
            frames = _frames("".join(e[6:] for e in events))
            assert len(frames) == len(events)  # one event per message
            assert [f["type"] for f in frames] == [1] * (len(frames) - 1) + [3]  # client events, completion
            assert frames[0]["arguments"][0]["payload"]["kind"] == "ENTITY.JOIN"
            await http.post(url, headers=auth, content=json.dumps({"type": 7}) + RS)
            rest = "".join([chunk async for chunk in chunks])  # the stream ends after the close message
        assert rest.endswith('data: {"type":7}\x1e\r\n\r\n')


async def test_an_http_send_to_a_websocket_connection_is_405(server: RoomServerHandle) -> None:
    auth = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
        token = (await http.post("/room/negotiate?negotiateVersion=1")).json()["connectionToken"]
        async with connect(f"{ws_url(server.url)}?id={token}", additional_headers=auth) as ws:
            await ws.send(HANDSHAKE)
            assert await ws.recv() == "{}" + RS
            answer = await http.post(f"/room?id={token}", content=HANDSHAKE)
            assert answer.status_code == 405
            assert answer.json()["message"] == "POST requests are not allowed for WebSocket connections."
        unknown = await http.post(f"/room?id={token}", content=HANDSHAKE)  # closed: the id is gone
        assert unknown.status_code == 404


async def test_hub_connections_are_capped_apart_from_the_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`roomserver serve` with room for 2 HTTP requests and 2 hub connections: with the hub full, a third
    member is refused 503 `HUB_FULL` and the API still answers (the members do not use its budget)."""
    monkeypatch.setenv("ROOMSERVER_MAX_CONNECTIONS", "2")
    monkeypatch.setenv("ROOMSERVER_HUB_MAX_CONNECTIONS", "2")
    server = start_roomserver_process(tmp_path / "data")
    try:
        async with contextlib.AsyncExitStack() as members:
            for _ in range(2):
                await members.enter_async_context(hub_client(server.url, server.token))
            auth = {"Authorization": f"Bearer {server.token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=auth) as http:
                full = await http.post("/room/negotiate?negotiateVersion=1")
                assert (full.status_code, full.json()["code"]) == (503, "HUB_FULL")
                assert "hub_max_connections" in full.json()["message"]
                assert (await http.get("/health")).status_code == 200
                assert (await http.get(f"/room/{ROOM}/state")).status_code == 200
    finally:
        server.stop()
