"""The whole operator on PostgreSQL: apply, restart on the same store, the room is still managed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service.conftest import operator_settings, room_spec, running_operator
from tests.store.conftest import postgres_schema, postgres_url
from tests.support.roomserver import RoomServerHandle


@pytest.mark.postgres
async def test_operator_state_survives_a_restart_on_postgresql(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    url = await postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    async with postgres_schema(url) as schema:
        settings = operator_settings(roomserver, tmp_path, store={"url": url, "schema_name": schema})
        async with running_operator(settings) as op:
            applied = await op.http.post("/apply", json=room_spec("room-pg-room"))
            assert applied.status_code == 200
        async with running_operator(settings) as op:
            room = (await op.http.get("/rooms/room-pg-room")).json()
            assert (room["managed"], room["specVersion"], room["revision"]) == (True, 1, 1)
            run = (await op.http.get(f"/runs/{applied.json()['correlationId']}")).json()
            assert run["status"] == "succeeded"
            entries = (await op.http.get("/audit", params={"roomId": "room-pg-room"})).json()["entries"]
            assert "spec.accepted" in [e["action"] for e in entries]
