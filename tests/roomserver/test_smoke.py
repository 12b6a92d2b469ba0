"""The room server answers over a real socket, and keeps a declared entity in its state."""

from __future__ import annotations

import httpx
from typer.testing import CliRunner

from roomserver.cli import app
from tests.support.roomserver import RoomServerHandle


async def test_health_and_join_show_in_state_over_a_socket(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as client:
        assert (await client.get("/health")).text == "Healthy"
        joined = await client.post(
            "/room/room-ai-lab-01/join", json={"entityId": "E-agent-1", "kind": "agent"}
        )
        assert joined.status_code == 201
        state = (await client.get("/room/room-ai-lab-01/state")).json()
    assert [e["id"] for e in state["entities"]] == ["E-agent-1"]
    assert state["status"] == "active"


def test_help_shows_flags_without_a_bool_placeholder() -> None:
    shown = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "120"})
    assert shown.exit_code == 0
    assert "--insecure-no-auth" in shown.output
    assert "<bool>" not in shown.output
