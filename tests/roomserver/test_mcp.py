"""MCP status and admin routes, loaded providers as room resources (per room with `roomId`), and the pure
provider rules of `roomserver.domain.mcp` (kinds, backoff, resolution, visibility, rate limits, caps)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from roomserver.api.schemas import McpStatusOut
from roomserver.domain.mcp import (
    Backoff,
    Provider,
    ProviderKind,
    ProviderState,
    ToolError,
    ToolSpec,
    catalog,
    kind_of,
    may_call,
    raw_output,
    resolve,
    visible_providers,
)
from roomserver.errors import RoomServerError
from roomserver.settings import ServerSettings

ROOM, OTHER = "room-ai-lab-01", "room-ai-lab-02"


async def test_zero_providers(client: httpx.AsyncClient) -> None:
    for path in ("/status/mcp", "/admin/mcp/status"):
        answer = await client.get(path)
        assert (answer.status_code, answer.json()) == (200, {"providers": []})


async def test_load_needs_providers(client: httpx.AsyncClient) -> None:
    bodies: list[dict[str, Any]] = [{}, {"providers": []}, {"providers": None}]
    for body in bodies:
        answer = await client.post("/admin/mcp/load", json=body)
        assert (answer.status_code, answer.json()) == (400, {"error": "No providers specified"})
    for url in ("file:///etc/passwd", "stdio:/bin/sh -c id", "stdio:"):
        bad = await client.post("/admin/mcp/load", json={"providers": [{"id": "x", "url": url}]})
        assert bad.status_code == 400
        assert "providers.0.url" in bad.json()["message"]


async def test_loaded_providers_show_in_status_and_room_resources(client: httpx.AsyncClient) -> None:
    body = {"providers": [{"id": "analysis-tool", "url": "ws://127.0.0.1:9/mcp", "visibility": "room"}]}
    loaded = await client.post("/admin/mcp/load", json=body)
    assert loaded.json() == {"message": "MCP providers loading initiated", "count": 1}
    status = McpStatusOut.model_validate((await client.get("/status/mcp")).json())
    assert [(p.id, p.state in ("idle", "connecting", "error")) for p in status.providers] == [
        ("analysis-tool", True)
    ]
    resources = (await client.get(f"/room/{ROOM}/state")).json()["resources"]
    assert [(r["name"], r["type"], r["config"]) for r in resources] == [
        ("analysis-tool", "mcp-tool", {"endpoint": "ws://127.0.0.1:9/mcp"})
    ]
    assert resources[0]["status"] != "connected"
    moved = {"providers": [{"id": "analysis-tool", "url": "ws://127.0.0.1:10/mcp"}]}
    await client.post("/admin/mcp/load", json=moved)
    assert [p["id"] for p in (await client.get("/admin/mcp/status")).json()["providers"]] == ["analysis-tool"]
    state = (await client.get(f"/room/{ROOM}/state")).json()
    assert state["resources"][0]["config"]["endpoint"].endswith(":10/mcp")


async def test_a_room_sees_its_own_providers_and_the_global_ones(client: httpx.AsyncClient) -> None:
    own = {"roomId": ROOM, "providers": [{"id": "search", "url": "ws://127.0.0.1:9/own"}]}
    shared = {
        "providers": [
            {"id": "search", "url": "ws://127.0.0.1:9/shared"},
            {"id": "files", "url": "https://127.0.0.1:9/mcp"},
        ]
    }
    for body in (own, shared):
        assert (await client.post("/admin/mcp/load", json=body)).status_code == 200

    async def endpoints(room_id: str) -> dict[str, str]:
        state = (await client.get(f"/room/{room_id}/state")).json()
        return {r["name"]: r["config"]["endpoint"] for r in state["resources"]}

    assert await endpoints(ROOM) == {"search": "ws://127.0.0.1:9/own", "files": "https://127.0.0.1:9/mcp"}
    assert await endpoints(OTHER) == {"search": "ws://127.0.0.1:9/shared", "files": "https://127.0.0.1:9/mcp"}
    assert len((await client.get("/status/mcp")).json()["providers"]) == 3


# --- the pure rules ---------------------------------------------------------------------------------------


def connected(provider_id: str, *tools: ToolSpec, room_id: str | None = None) -> Provider:
    provider = Provider(provider_id, "ws://127.0.0.1:9", "room", room_id)
    provider.attempt(1)
    provider.connect(list(tools), 2)
    return provider


def test_kinds_follow_the_url() -> None:
    assert [kind_of(u) for u in ("ws://h", "wss://h", "http://h/mcp", "https://h", "stdio:files")] == [
        ProviderKind.REFERENCE,
        ProviderKind.REFERENCE,
        ProviderKind.MCP_HTTP,
        ProviderKind.MCP_HTTP,
        ProviderKind.MCP_STDIO,
    ]


def test_backoff_doubles_up_to_its_cap_and_the_state_machine_counts() -> None:
    backoff = Backoff(0.5, 4.0)
    assert [backoff.delay(n) for n in (1, 2, 3, 4, 5, 500)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    provider = Provider("p", "ws://h", "room")
    for attempt in range(1, 4):
        provider.attempt(1000 * attempt)
        assert (provider.state, provider.attempts, provider.next_retry_at) == (
            ProviderState.CONNECTING,
            attempt,
            None,
        )
        provider.fail("refused", backoff, 1000 * attempt)
    assert provider.status() == {
        "id": "p",
        "state": "error",
        "attempts": 3,
        "lastChangeAt": 3000,
        "lastError": "refused",
        "nextRetryAt": 5000,
    }
    provider.attempt(6000)
    provider.connect([ToolSpec("t")], 6100)
    assert (provider.state, provider.failures, provider.last_error, provider.attempts) == (
        ProviderState.CONNECTED,
        0,
        None,
        4,
    )
    provider.fail("lost", backoff, 7000)
    assert provider.next_retry_at == 7500  # the backoff starts again after a connection


def test_resolution_by_key_or_unique_tool_id() -> None:
    one = connected("srv:a", ToolSpec("search"), ToolSpec("read"))
    two = connected("srv", ToolSpec("search"))
    offline = Provider("off", "ws://h", "room")
    providers = [one, two, offline]
    assert resolve(providers, "read").tool is one.tools[1]
    assert resolve(providers, "srv:a:search").provider is one  # ids may hold ':'
    assert resolve(providers, "srv:search").provider is two
    assert resolve(providers, "off:anything").tool is None  # named, not connected: MCP_UNAVAILABLE later
    for reference, message in (
        ("search", "Tool not found: search (ambiguous: srv:a:search, srv:search; call it by key)"),
        ("srv:nothing", "Tool not found: srv:nothing"),
        ("nothing", "Tool not found: nothing"),
    ):
        with pytest.raises(RoomServerError) as refused:
            resolve(providers, reference)
        assert (refused.value.status, refused.value.code, refused.value.message) == (
            404,
            "TOOL_NOT_FOUND",
            message,
        )


def test_visibility_policy_and_catalog() -> None:
    tools = (
        ToolSpec("open"),
        ToolSpec("hidden", policy={"visibility": "entity"}),
        ToolSpec("owned", policy={"allowedEntities": "owner", "rateLimit": {"perMinute": 2}}),
    )
    provider = connected("p", *tools)
    assert [t["toolId"] for t in catalog([provider])] == ["open", "owned"]
    assert [may_call(t) for t in provider.tools] == [True, False, False]
    provider.fail("lost", Backoff(1, 1), 3)
    assert catalog([provider]) == []  # pruned while not connected
    own, shared, other = (
        connected("x", room_id=ROOM),
        connected("x"),
        connected("y", room_id=OTHER),
    )
    assert visible_providers([own, shared, other], ROOM) == [own]
    assert visible_providers([own, shared, other], "room-third-03") == [shared]


def test_rate_limit_window_and_result_cap() -> None:
    provider = connected("p", ToolSpec("t", policy={"rateLimit": {"perMinute": 2}}))
    tool = provider.tools[0]
    assert [provider.admit(tool, "E-a", now) for now in (0, 1, 2)] == [True, True, False]
    assert provider.admit(tool, "E-b", 2)
    assert provider.admit(tool, "E-a", 60_001)  # the first call left the window
    assert raw_output({"a": "é"}, limit=20) == '{"a":"é"}'
    with pytest.raises(ToolError) as large:
        raw_output("x" * 30, limit=20)
    assert large.value.body() == {
        "error": "RESULT_TOO_LARGE",
        "message": "tool result is 32 bytes, over the server's 20-byte limit",
        "code": -32003,
    }


def test_stdio_commands_are_named_command_lines(tmp_path: Path) -> None:
    assert ServerSettings(data_dir=tmp_path, mcp_commands={"files": ["npx", "server"]}).mcp_commands
    for commands in ({"bad name": ["x"]}, {"empty": []}):
        with pytest.raises(ValidationError, match="mcp_commands"):
            ServerSettings(data_dir=tmp_path, mcp_commands=commands)
