"""ListTools and CallTool through the real hub, with providers loaded over `POST /admin/mcp/load`: the
reference's result and error shapes, RESOURCE.CALLED/RESULT events, timeouts, and an offline provider
that answers at once while a slow call is in flight."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.hub.client import HubError, entity, hub_client
from tests.providers.conftest import ReferenceProvider, until
from tests.support.roomserver import RoomServerHandle, running_roomserver

ROOM = "room-tools-01"
OTHER = "room-other-01"
PREFIX = "An unexpected error occurred invoking 'CallTool' on the server. HubException: "


@pytest.fixture
async def server(tmp_path: Path, stdio_command: list[str]) -> AsyncIterator[RoomServerHandle]:
    async with running_roomserver(
        tmp_path / "data",
        mcp_commands={"tools": stdio_command},
        mcp_call_timeout_seconds=1.5,
        mcp_retry_initial_seconds=0.05,
        mcp_retry_max_seconds=0.2,
    ) as handle:
        yield handle


async def load(rest: httpx.AsyncClient, room_id: str | None, *providers: dict[str, Any]) -> None:
    body: dict[str, Any] = {"providers": list(providers)}
    if room_id is not None:
        body["roomId"] = room_id
    answer = await rest.post("/admin/mcp/load", json=body)
    assert answer.json() == {"message": "MCP providers loading initiated", "count": len(providers)}


async def states(rest: httpx.AsyncClient) -> dict[str, str]:
    return {p["id"]: p["state"] for p in (await rest.get("/status/mcp")).json()["providers"]}


async def all_connected(rest: httpx.AsyncClient, *ids: str) -> None:
    async def check() -> bool:
        now = await states(rest)
        return all(now.get(i) == "connected" for i in ids)

    await until(check, what=f"{ids} connected", limit=20)


async def test_tools_listed_and_called_through_the_hub(
    server: RoomServerHandle, rest: httpx.AsyncClient, reference_provider: ReferenceProvider
) -> None:
    await load(
        rest, ROOM, {"id": "ref", "url": reference_provider.url}, {"id": "local", "url": "stdio:tools"}
    )
    await all_connected(rest, "ref", "local")
    async with hub_client(server.url, server.token) as alice, hub_client(server.url, server.token) as bob:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        await bob.invoke("Join", ROOM, entity("E-bob"))
        tools = await alice.invoke("listtools", ROOM)
        keys = {t["key"] for t in tools}
        assert {"ref:search", "ref:echo", "local:add", "local:echo"} <= keys
        assert "ref:secret" not in keys
        search = next(t for t in tools if t["key"] == "ref:search")
        assert set(search) == {"key", "toolId", "serverId", "title", "description", "inputSchema", "policy"}
        assert (search["toolId"], search["serverId"], search["title"]) == ("search", "ref", "Search")

        result = await alice.invoke("CallTool", ROOM, "local:add", {"a": 20, "b": 22})
        assert (result["ok"], result["error"], result["code"]) == (True, None, None)
        assert json.loads(result["rawOutput"])["structuredContent"] == {"result": 42}
        called = (await bob.next_event("RESOURCE.CALLED"))["payload"]["data"]
        assert called == {
            "toolId": "add",
            "serverId": "local",
            "key": "local:add",
            "callerEntityId": "E-alice",
            "args": {"a": 20, "b": 22},
        }
        answered = (await bob.next_event("RESOURCE.RESULT"))["payload"]["data"]
        assert (answered["ok"], answered["output"]["structuredContent"]) == (True, {"result": 42})

        with pytest.raises(HubError) as ambiguous:
            await alice.invoke("CallTool", ROOM, "echo", {"text": "x"})
        assert ambiguous.value.text == PREFIX + json.dumps(
            {
                "error": "NotFound",
                "code": "TOOL_NOT_FOUND",
                "message": "Tool not found: echo (ambiguous: local:echo, ref:echo; call it by key)",
            },
            separators=(",", ":"),
        )
        with pytest.raises(HubError) as failed:
            await alice.invoke("CallTool", ROOM, "ref:broken", {})
        assert failed.value.body == {"error": "MCP_ERROR", "message": "search backend down", "code": -32050}
        failure = (await bob.next_event("RESOURCE.RESULT"))["payload"]["data"]
        assert (failure["ok"], failure["error"], failure["code"]) == (False, "search backend down", -32050)

    async with hub_client(server.url, server.token) as outsider:
        await outsider.invoke("Join", OTHER, entity("E-outsider"))
        assert await outsider.invoke("ListTools", OTHER) == []  # loaded for ROOM only
        with pytest.raises(HubError) as unknown:
            await outsider.invoke("CallTool", OTHER, "ref:search", {})
        assert unknown.value.body == {
            "error": "NotFound",
            "code": "TOOL_NOT_FOUND",
            "message": "Tool not found: ref:search",
        }
        with pytest.raises(HubError) as elsewhere:
            await outsider.invoke("CallTool", ROOM, "ref:search", {})
        assert elsewhere.value.body is not None
        assert elsewhere.value.body["message"] == "cannot call tools in different room"


async def test_offline_provider_answers_at_once_while_a_call_hangs(
    server: RoomServerHandle, rest: httpx.AsyncClient, reference_provider: ReferenceProvider, unreachable: str
) -> None:
    await load(rest, None, {"id": "ref", "url": reference_provider.url}, {"id": "gone", "url": unreachable})
    await all_connected(rest, "ref")
    async with hub_client(server.url, server.token) as slow, hub_client(server.url, server.token) as quick:
        await slow.invoke("Join", ROOM, entity("E-slow"))
        await quick.invoke("Join", ROOM, entity("E-quick"))
        hanging = asyncio.create_task(slow.invoke("CallTool", ROOM, "ref:hang", {}))
        await until(lambda: _called(reference_provider, "hang"), what="the hanging call reached the provider")
        with pytest.raises(HubError) as offline:
            await quick.invoke("CallTool", ROOM, "gone:anything", {})
        assert offline.value.text == PREFIX + (
            '{"error":"MCP_UNAVAILABLE","message":"MCP server is not connected","code":-32002}'
        )
        assert {t["serverId"] for t in await quick.invoke("ListTools", ROOM)} == {"ref"}
        status = (await rest.get("/admin/mcp/status")).json()["providers"]
        assert {p["id"]: p["state"] for p in status}["gone"] in ("connecting", "error")
        assert not hanging.done()  # the offline provider answered while the slow call still waits
        with pytest.raises(HubError) as timed_out:
            await hanging
        assert timed_out.value.body == {
            "error": "MCP_UNAVAILABLE",
            "message": "MCP server did not answer within 1.5 s",
            "code": -32002,
        }


async def _called(provider: ReferenceProvider, tool: str) -> bool:
    return any(call["toolId"] == tool for call in provider.calls)


async def test_providers_of_the_settings_start_with_the_server(
    tmp_path: Path, stdio_command: list[str]
) -> None:
    servers = [{"id": "boot", "command": stdio_command}]
    async with (
        running_roomserver(tmp_path / "data", mcp_servers=servers) as handle,
        httpx.AsyncClient(base_url=handle.url, headers={"Authorization": f"Bearer {handle.token}"}) as rest,
    ):
        await all_connected(rest, "boot")
        resources = (await rest.get(f"/room/{ROOM}/state")).json()["resources"]
        assert resources == [
            {"name": "boot", "type": "mcp-tool", "status": "connected", "config": {"endpoint": "stdio:boot"}}
        ]
        refused = await rest.post(
            "/admin/mcp/load", json={"providers": [{"id": "x", "url": "stdio:nothing"}]}
        )
        assert refused.status_code == 400
        assert "providers.0.url: stdio:nothing names no configured command" in refused.json()["message"]
