"""MCP status and admin routes with zero providers, and loaded providers shown as room resources."""

from __future__ import annotations

import httpx

from roomserver.api.schemas import McpStatusOut


async def test_zero_providers(client: httpx.AsyncClient) -> None:
    for path in ("/status/mcp", "/admin/mcp/status"):
        answer = await client.get(path)
        assert (answer.status_code, answer.json()) == (200, {"providers": []})


async def test_load_needs_providers(client: httpx.AsyncClient) -> None:
    for body in ({}, {"providers": []}, {"providers": None}):
        answer = await client.post("/admin/mcp/load", json=body)
        assert (answer.status_code, answer.json()) == (400, {"error": "No providers specified"})
    bad = await client.post("/admin/mcp/load", json={"providers": [{"id": "x", "url": "file:///etc/passwd"}]})
    assert bad.status_code == 400
    assert "providers.0.url" in bad.json()["message"]


async def test_loaded_providers_show_in_status_and_room_resources(client: httpx.AsyncClient) -> None:
    body = {"providers": [{"id": "analysis-tool", "url": "ws://127.0.0.1:9/mcp", "visibility": "room"}]}
    loaded = await client.post("/admin/mcp/load", json=body)
    assert loaded.json() == {"message": "MCP providers loading initiated", "count": 1}
    status = McpStatusOut.model_validate((await client.get("/status/mcp")).json())
    assert [(p.id, p.state, p.attempts, p.lastError) for p in status.providers] == [
        ("analysis-tool", "idle", 0, None)
    ]
    resources = (await client.get("/room/room-ai-lab-01/state")).json()["resources"]
    assert resources == [
        {
            "name": "analysis-tool",
            "type": "mcp-tool",
            "status": "idle",
            "config": {"endpoint": "ws://127.0.0.1:9/mcp"},
        }
    ]
    moved = {"providers": [{"id": "analysis-tool", "url": "ws://127.0.0.1:10/mcp"}]}
    await client.post("/admin/mcp/load", json=moved)
    assert (await client.get("/admin/mcp/status")).json()["providers"][0]["id"] == "analysis-tool"
    assert (
        (await client.get("/room/room-ai-lab-01/state"))
        .json()["resources"][0]["config"]["endpoint"]
        .endswith(":10/mcp")
    )
