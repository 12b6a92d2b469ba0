"""The SignalR transport of `/room`: negotiate, authentication, handshake, framing, keep-alive, limits."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomserver.hub import protocol
from tests.hub.client import RS, HubClient, entity, hub_client, ws_url
from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle, running_roomserver

HANDSHAKE = json.dumps({"protocol": "json", "version": 1}) + RS


async def test_negotiate_v1_and_v0_offer_the_three_transports(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        v1 = (await http.post("/room/negotiate?negotiateVersion=1")).json()
        v0 = (await http.post("/room/negotiate")).json()
        bad = await http.post("/room/negotiate?negotiateVersion=x")
    transports = [
        {"transport": "WebSockets", "transferFormats": ["Text"]},
        {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
        {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
    ]
    assert v1.keys() == {"negotiateVersion", "connectionId", "connectionToken", "availableTransports"}
    assert (v1["negotiateVersion"], v1["availableTransports"]) == (1, transports)
    assert v1["connectionId"] != v1["connectionToken"]
    assert v0.keys() == {"negotiateVersion", "connectionId", "availableTransports"}
    assert v0["negotiateVersion"] == 0
    assert bad.status_code == 400
    assert bad.json()["code"] == "INVALID_REQUEST"


async def test_negotiate_and_connect_need_a_token_with_room_read(tmp_path: Path) -> None:
    async with running_roomserver(tmp_path / "data", scopes=("room:artifacts:write",)) as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            anonymous = await http.post("/room/negotiate?negotiateVersion=1")
            unscoped = await http.post(
                "/room/negotiate?negotiateVersion=1", headers={"Authorization": f"Bearer {server.token}"}
            )
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTH_REQUIRED")
        assert (unscoped.status_code, unscoped.json()["code"]) == (403, "INSUFFICIENT_SCOPE")
        for headers in ({}, {"Authorization": f"Bearer {server.token}"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(ws_url(server.url), additional_headers=headers):
                    pass
            assert refused.value.response.status_code in (401, 403)


async def test_the_access_token_query_parameter_authenticates_as_browsers_send_it(
    server: RoomServerHandle,
) -> None:
    async with connect(f"{ws_url(server.url)}?access_token={server.token}") as ws:
        await ws.send(HANDSHAKE)
        assert await ws.recv() == "{}" + RS


async def test_a_negotiated_id_is_used_once_and_an_unknown_one_is_404(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
        token = (await http.post("/room/negotiate?negotiateVersion=1")).json()["connectionToken"]
    async with connect(f"{ws_url(server.url)}?id={token}", additional_headers=headers):
        with pytest.raises(InvalidStatus) as reused:
            async with connect(f"{ws_url(server.url)}?id={token}", additional_headers=headers):
                pass
    assert reused.value.response.status_code == 404
    assert json.loads(reused.value.response.body or b"{}")["code"] == "CONNECTION_NOT_FOUND"


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        ({"protocol": "messagepack", "version": 1}, "The protocol 'messagepack' is not supported."),
        ({"protocol": "json", "version": 2}, "The server does not support version 2 of the 'json' protocol."),
    ],
)
async def test_an_unsupported_handshake_is_answered_with_an_error_then_closed(
    server: RoomServerHandle, request_: dict[str, object], error: str
) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with connect(ws_url(server.url), additional_headers=headers) as ws:
        await ws.send(json.dumps(request_) + RS)
        assert json.loads((await ws.recv()).rstrip(RS)) == {"error": error}
        await ws.wait_closed()


async def test_several_messages_in_one_frame_and_fire_and_forget(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        join = {"type": 1, "invocationId": "j", "target": "Join", "arguments": [ROOM, entity("E-alice")]}
        chat = {
            "type": 1,
            "target": "SendToRoom",
            "arguments": [ROOM, {"from": "E-alice", "payload": {"text": "a"}}],
        }
        listing = {"type": 1, "invocationId": "l", "target": "listentities", "arguments": [ROOM]}
        await client.send({"type": 6}, join, chat, listing)
        message = await client.messages.get()
        listed = await client.invoke("ListEntities", ROOM)
    assert message["payload"] == {"text": "a"}
    assert [e["id"] for e in listed] == ["E-alice"]


async def test_a_void_method_completes_without_a_result_key(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        await client.invoke("Join", ROOM, entity("E-alice"))
        completion = await client.completion("Leave", ROOM, "E-alice")
    assert completion == {"type": 3, "invocationId": "2"}


async def test_a_message_past_32_kb_closes_the_connection_with_the_reason(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        await client.invoke("Join", ROOM, entity("E-alice"))
        big = {"from": "E-alice", "payload": {"text": "x" * protocol.MAX_MESSAGE_BYTES}}
        await client.send({"type": 1, "target": "SendToRoom", "arguments": [ROOM, big]})
        close = await client.next_frame()
    assert close == {
        "type": 7,
        "error": "Connection closed with an error. The maximum message size of 32768B was exceeded.",
    }


async def test_malformed_json_closes_the_connection(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        await client.ws.send("{not json" + RS)
        close = await client.next_frame()
    assert close["type"] == 7
    assert close["error"] == "Connection closed with an error. Error reading JSON."


async def test_the_server_pings_and_drops_a_silent_client(tmp_path: Path) -> None:
    async with (
        running_roomserver(
            tmp_path / "data", hub_keepalive_seconds=0.1, hub_client_timeout_seconds=0.35
        ) as server,
        hub_client(server.url, server.token) as client,
    ):
        assert await client.next_frame() == {"type": 6}
        frames = [await client.next_frame() for _ in range(3)]
        while frames[-1]["type"] == 6:
            frames.append(await client.next_frame())
    assert frames[-1] == {
        "type": 7,
        "error": "Server timeout elapsed: nothing received from the client for 0.35 s.",
    }


async def test_a_client_that_pings_stays_connected(tmp_path: Path) -> None:
    async with (
        running_roomserver(
            tmp_path / "data", hub_keepalive_seconds=0.1, hub_client_timeout_seconds=0.35
        ) as server,
        hub_client(server.url, server.token) as client,
    ):
        for _ in range(8):  # 0.8 s, over twice the timeout: each server ping is answered
            assert await client.next_frame() == {"type": 6}
            await client.send({"type": 6})
        assert (await client.invoke("Join", ROOM, entity("E-alice")))[0]["id"] == "E-alice"


async def test_connect_without_negotiate_is_allowed_for_websockets(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token, negotiate=False) as client:
        assert isinstance(client, HubClient)
        assert (await client.invoke("Join", ROOM, entity("E-alice")))[0]["id"] == "E-alice"
