"""A spec with an MCP resource converges: the real operator loads the provider for its room
(`POST /admin/mcp/load` with `roomId`), the room server connects the SDK's MCP server over stdio, and the
room's state shows the resource `connected`, so the room goes Ready."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.providers.conftest import until
from tests.service.conftest import operator_settings, room_spec, running_operator
from tests.support.roomserver import running_roomserver

ROOM = "room-with-tools-1"


async def test_a_spec_with_an_mcp_resource_converges(tmp_path: Path, stdio_command: list[str]) -> None:
    async with running_roomserver(tmp_path / "roomserver", mcp_commands={"tools": stdio_command}) as rs:
        settings = operator_settings(
            rs,
            tmp_path,
            reconciliation={"interval_seconds": 0.2, "jitter_percent": 0},
            features={"resources": True},
        )
        spec = room_spec(ROOM, entities=1)
        spec["spec"]["resources"] = [
            {"name": "local-tools", "type": "mcp-tool", "config": {"endpoint": "stdio:tools"}}
        ]
        admin = httpx.AsyncClient(base_url=rs.url, headers={"Authorization": f"Bearer {rs.admin_token}"})
        async with running_operator(settings) as op, admin:
            applied = await op.http.post("/apply", json=spec)
            assert applied.status_code == 200, applied.text

            async def ready() -> bool:
                status: dict[str, Any] = (await op.http.get(f"/status/rooms/{ROOM}")).json()
                conditions = {c["type"]: c["status"] for c in status.get("conditions", [])}
                return conditions.get("Ready") == "True"

            await until(ready, what="the room Ready", limit=30)
            resources = (await admin.get(f"/room/{ROOM}/state")).json()["resources"]
            assert resources == [
                {
                    "name": "local-tools",
                    "type": "mcp-tool",
                    "status": "connected",
                    "config": {"endpoint": "stdio:tools"},
                }
            ]
            assert (await admin.get("/room/room-elsewhere-1/state")).json()[
                "resources"
            ] == []  # its room's only
