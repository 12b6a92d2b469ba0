"""The provider supervisor against real peers: the SDK's MCP server over stdio and streamable HTTP, a
reference-dialect WebSocket provider, and an address nothing listens on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from roomserver.domain.mcp import ToolError, ToolErrorCode
from roomserver.errors import RoomServerError
from roomserver.providers.supervisor import ProviderConfig, Providers
from roomserver.settings import ServerSettings
from tests.providers.conftest import ReferenceProvider, until

ROOM = "room-tools-01"


def settings(tmp_path: Path, **overrides: Any) -> ServerSettings:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "mcp_retry_initial_seconds": 0.05,
        "mcp_retry_max_seconds": 0.2,
        "mcp_call_timeout_seconds": 1.0,
        "mcp_health_seconds": 0.2,
        **overrides,
    }
    return ServerSettings(**values)


@contextlib.asynccontextmanager
async def running(config: ServerSettings) -> AsyncIterator[Providers]:
    providers = Providers(config)
    providers.start()
    try:
        yield providers
    finally:
        await providers.close()


def status(providers: Providers, provider_id: str) -> dict[str, Any]:
    return next(s for s in providers.statuses() if s["id"] == provider_id)


async def connected(providers: Providers, provider_id: str) -> None:
    async def check() -> bool:
        return bool(status(providers, provider_id)["state"] == "connected")

    await until(check, what=f"{provider_id} connected", limit=20)


async def call(providers: Providers, tool: str, args: Any, *, room: str = ROOM) -> Any:
    output, raw = await providers.call(providers.prepare(room, tool, "E-caller"), args)
    assert json.loads(raw) == output
    return output


async def test_stdio_server_lists_and_answers_tools(tmp_path: Path, stdio_command: list[str]) -> None:
    config = settings(tmp_path, mcp_commands={"tools": stdio_command}, mcp_max_result_bytes=2000)
    async with running(config) as providers:
        providers.load([ProviderConfig("local", "stdio:tools")], room_id=ROOM)
        await connected(providers, "local")
        listed = {t["key"]: t for t in providers.tools(ROOM)}
        assert set(listed) == {"local:echo", "local:add", "local:slow", "local:big", "local:fail"}
        assert listed["local:add"]["description"] == "Adds two integers."
        assert listed["local:add"]["policy"] == {
            "visibility": "room",
            "allowedEntities": "public",
            "scopes": [],
            "rateLimit": {"perMinute": 60},
        }
        assert providers.tools("room-other-01") == []  # loaded for ROOM only
        assert (await call(providers, "add", {"a": 2, "b": 3}))["structuredContent"] == {"result": 5}
        with pytest.raises(ToolError) as failed:
            await call(providers, "local:fail", {})
        assert failed.value.body() == {
            "error": "MCP_ERROR",
            "message": "Error executing tool fail: this tool always fails",
            "code": -32000,
        }
        with pytest.raises(ToolError) as slow:
            await call(providers, "slow", {"seconds": 5})
        assert (slow.value.error, slow.value.message) == (
            ToolErrorCode.MCP_UNAVAILABLE,
            "MCP server did not answer within 1 s",
        )
        with pytest.raises(ToolError) as big:
            await call(providers, "big", {"size": 5000})
        assert big.value.body()["error"] == "RESULT_TOO_LARGE"
        assert (await call(providers, "echo", {"text": "still here"}))["structuredContent"] == {
            "result": "still here"
        }


async def test_streamable_http_server(tmp_path: Path, mcp_http: str) -> None:
    async with running(settings(tmp_path)) as providers:
        assert providers.load([ProviderConfig("remote", mcp_http)]) == 1  # no room: every room's
        await connected(providers, "remote")
        assert "remote:echo" in {t["key"] for t in providers.tools("room-any-room-01")}
        output = await call(providers, "remote:echo", {"text": "hello"}, room="room-any-room-01")
        assert output["content"] == [{"type": "text", "text": "hello"}]


async def test_reference_dialect(tmp_path: Path, reference_provider: ReferenceProvider) -> None:
    async with running(settings(tmp_path)) as providers:
        providers.load([ProviderConfig("ref", reference_provider.url, "team")], room_id=ROOM)
        await connected(providers, "ref")
        listed = {t["toolId"]: t for t in providers.tools(ROOM)}
        assert "secret" not in listed  # visibility: entity
        assert listed["search"]["policy"]["rateLimit"] == {"perMinute": 3}
        assert listed["echo"]["policy"]["visibility"] == "team"  # the provider's visibility
        assert listed["search"]["inputSchema"]["properties"] == {"q": {"type": "string"}}
        assert await call(providers, "search", {"q": "rooms"}) == {"tool": "search", "input": {"q": "rooms"}}
        assert reference_provider.calls[-1] == {"toolId": "search", "input": {"q": "rooms"}}
        for denied in ("secret", "owned"):
            with pytest.raises(RoomServerError) as refused:
                providers.prepare(ROOM, denied, "E-caller")
            assert (refused.value.code, refused.value.message) == (
                "PERM_DENIED",
                "You are not allowed to call this tool",
            )
        with pytest.raises(ToolError) as broken:
            await call(providers, "broken", None)
        assert broken.value.body() == {"error": "MCP_ERROR", "message": "search backend down", "code": -32050}
        with pytest.raises(ToolError) as hung:
            await call(providers, "hang", {})
        assert hung.value.error is ToolErrorCode.MCP_UNAVAILABLE
        await call(providers, "search", {"q": 2})
        await call(providers, "search", {"q": 3})
        with pytest.raises(ToolError) as limited:
            providers.prepare(ROOM, "search", "E-caller")
        assert limited.value.body() == {
            "error": "RATE_LIMITED",
            "message": "Rate limit exceeded for this tool",
            "code": -32001,
        }
        providers.prepare(ROOM, "search", "E-other")  # the window is per entity
        with pytest.raises(RoomServerError) as unknown:
            providers.prepare(ROOM, "nothing", "E-caller")
        assert (unknown.value.code, unknown.value.message) == ("TOOL_NOT_FOUND", "Tool not found: nothing")


async def test_unreachable_provider_retries_with_capped_backoff(tmp_path: Path, unreachable: str) -> None:
    async with running(settings(tmp_path)) as providers:
        providers.load([ProviderConfig("gone", unreachable)], room_id=ROOM)

        async def retried() -> bool:
            now = status(providers, "gone")
            return bool(now["state"] == "error" and now["attempts"] >= 5)

        await until(retried, what="five failed attempts")
        now = status(providers, "gone")
        assert now["lastError"]  # the real error, not "Max connection attempts reached"
        assert now["nextRetryAt"] - now["lastChangeAt"] == 200  # 50, 100, 200, then capped at 200 ms
        assert providers.resources(room_id=ROOM)[0]["status"] in ("error", "connecting")
        with pytest.raises(ToolError) as offline:
            providers.prepare(ROOM, "gone:anything", "E-caller")
        assert offline.value.body() == {
            "error": "MCP_UNAVAILABLE",
            "message": "MCP server is not connected",
            "code": -32002,
        }


async def test_lost_connection_reconnects_and_reload_replaces(
    tmp_path: Path, reference_provider: ReferenceProvider, unreachable: str
) -> None:
    async with running(settings(tmp_path)) as providers:
        providers.load([ProviderConfig("ref", reference_provider.url)], room_id=ROOM)
        await connected(providers, "ref")
        providers.load([ProviderConfig("ref", reference_provider.url)], room_id=ROOM)  # the same: kept
        assert (status(providers, "ref")["attempts"], reference_provider.connections) == (1, 1)
        reference_provider.tools.append({"id": "fresh"})

        async def relisted() -> bool:
            return "ref:fresh" in {t["key"] for t in providers.tools(ROOM)}

        await until(relisted, what="the new tool listed at a liveness probe")
        await reference_provider.drop()

        async def reconnected() -> bool:
            return reference_provider.connections == 2 and status(providers, "ref")["state"] == "connected"

        await until(reconnected, what="a second connection")
        assert status(providers, "ref")["attempts"] == 2
        providers.load([ProviderConfig("ref", unreachable)], room_id=ROOM)  # a new URL replaces it
        assert status(providers, "ref")["attempts"] <= 1
        assert providers.resources(room_id=ROOM)[0]["config"] == {"endpoint": unreachable}
        assert providers.tools(ROOM) == []


async def test_close_cancels_tasks_and_ends_stdio_processes(
    tmp_path: Path, stdio_command: list[str], unreachable: str
) -> None:
    config = settings(tmp_path, mcp_commands={"tools": stdio_command})
    providers = Providers(config)
    providers.load([ProviderConfig("local", "stdio:tools"), ProviderConfig("gone", unreachable)])
    await connected(providers, "local")
    children = [
        p for p in psutil.Process().children(recursive=True) if p.cmdline()[-2:] == stdio_command[-2:]
    ]
    assert children
    await providers.close()
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("mcp-provider")]
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    providers.load([ProviderConfig("late", unreachable)])  # after close: registered, never started
    assert status(providers, "late")["state"] == "idle"
