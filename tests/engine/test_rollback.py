"""Rollback in the running operator: a revision that failed and was rolled back is not retried until
something changes, and the operator's own writes start no run.

A real failing item: the room server refuses a seed larger than its upload limit (413), every time. With
`rollback: on-failure` the run reseeds the other artifact, fails the big one and restores the first
(a new version). Before, the rollback's own room-server events started the next run at once, past the
failure backoff: hundreds of rollbacks, an artifact version climbing without end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.service.conftest import Operator, operator_settings, running_operator, sse_data
from tests.service.test_audit_intents import finished
from tests.support.roomserver import RoomServerHandle, running_roomserver

ROOM = "room-rollback-1"
LIMIT = 1024


@pytest.fixture
async def strict_server(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    """A room server refusing uploads above `LIMIT` bytes."""
    async with running_roomserver(tmp_path / "roomserver", max_upload_bytes=LIMIT) as handle:
        yield handle


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    folder = tmp_path / "seeds"
    folder.mkdir()
    (folder / "notes-1.md").write_text("# notes\n\nfirst\n")
    (folder / "notes-2.md").write_text("# notes\n\nsecond\n")
    (folder / "big.bin").write_bytes(b"x" * (4 * LIMIT))
    return folder


def spec(version: int, **seeded: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": {"name": ROOM, "version": version},
        "spec": {
            "roomId": ROOM,
            "rollback": "on-failure",
            "entities": [{"id": "E-agent-1", "kind": "agent"}],
            "artifacts": [
                {"name": name, "type": "document", "workspace": "shared", "seedFrom": path}
                for name, path in seeded.items()
            ],
        },
    }


async def _caught_up(op: Operator, admin: httpx.AsyncClient) -> None:
    """Wait (bounded) until the operator has received every room-server event of the room so far, and
    has done with them."""
    revision = (await admin.get(f"/room/{ROOM}/state")).json()["revision"]
    async with asyncio.timeout(10):
        while int(op.app.state.follower.last_event_id or 0) < revision:  # noqa: ASYNC110  (no event for it)
            await asyncio.sleep(0.02)
        await op.controller.wait_idle()


async def _reads(op: Operator, more: int) -> None:
    """Wait (bounded) until the operator has read the room server `more` more times (loop ticks)."""
    client = op.app.state.client
    target = client.requests + more
    async with asyncio.timeout(10):
        while client.requests < target:  # noqa: ASYNC110  (a counter: there is no event to await)
            await asyncio.sleep(0.02)
        await op.controller.wait_idle()


async def _rollbacks(op: Operator) -> int:
    params = {"roomId": ROOM, "action": "reconcile.rollback", "count": 1000}
    return len((await op.http.get("/audit", params=params)).json()["entries"])


async def _notes_version(admin: httpx.AsyncClient) -> int:
    state = (await admin.get(f"/room/{ROOM}/state")).json()
    version: int = next(a["version"] for a in state["artifacts"] if a["name"] == "notes")
    return version


async def test_a_rolled_back_revision_waits_for_a_change(
    strict_server: RoomServerHandle, seeds: Path, tmp_path: Path
) -> None:
    settings = operator_settings(
        strict_server,
        tmp_path / "operator",
        seeds={"roots": [seeds]},
        # A fast loop and a short backoff: without the hold, the failing revision is retried constantly.
        reconciliation={
            "interval_seconds": 0.1,
            "failure_backoff_initial_seconds": 0.05,
            "failure_backoff_max_seconds": 0.1,
        },
    )
    admin = httpx.AsyncClient(
        base_url=strict_server.url, headers={"Authorization": f"Bearer {strict_server.admin_token}"}
    )
    async with admin, running_operator(settings) as op:
        first = await op.http.post("/apply", json=spec(1, notes="notes-1.md"))
        assert first.json()["success"] is True
        failed = (await op.http.post("/apply", json=spec(2, notes="notes-2.md", big="big.bin"))).json()
        assert (failed["success"], failed["code"], failed["phase"]) == (False, "ITEMS_FAILED", "ROLLBACK")
        assert await _notes_version(admin) == 3  # v2 reseeded, v3 the rollback's restore of v1

        await _caught_up(op, admin)
        await _reads(op, 5)  # the loop came round several times
        assert await _rollbacks(op) == 1
        assert await _notes_version(admin) == 3
        status = (await op.http.get(f"/status/rooms/{ROOM}")).json()
        stalled = next(c for c in status["conditions"] if c["type"] == "Stalled")
        assert (stalled["status"], stalled["reason"]) == ("True", "RolledBack")
        assert "revision 2 failed and was rolled back" in stalled["message"]

        # Someone else changes the room: the operator tries once more, and waits again.
        async with sse_data(op.http, "/events") as entries:
            edited = {"kind": "agent", "displayName": "Edited"}
            await admin.put(f"/room/{ROOM}/entities/E-agent-1", json=edited)
            async with asyncio.timeout(10):
                async for entry in entries:
                    if entry.get("roomId") == ROOM and entry.get("action") == "reconcile.rollback":
                        break
        await _caught_up(op, admin)
        await _reads(op, 5)
        assert await _rollbacks(op) == 2
        assert await _notes_version(admin) == 5

        # A reconcile asked for runs it again at once.
        asked = await op.http.post(f"/rooms/{ROOM}/reconcile")
        assert asked.status_code == 202
        async with asyncio.timeout(10):
            await finished(op.http, asked.headers["Location"])
        await _caught_up(op, admin)
        await _reads(op, 5)
        assert await _rollbacks(op) == 3

        # A new spec is run at once, and ends the hold.
        fixed = (await op.http.post("/apply", json=spec(3, notes="notes-2.md"))).json()
        assert (fixed["success"], fixed["converged"]) == (True, True)
        status = (await op.http.get(f"/status/rooms/{ROOM}")).json()
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Ready": "True", "Reconciling": "False", "Stalled": "False",
        }  # fmt: skip


async def test_the_operators_own_writes_start_no_run(
    strict_server: RoomServerHandle, seeds: Path, tmp_path: Path
) -> None:
    # The loop's interval is 30 s here: a run after an apply can only come from an event.
    settings = operator_settings(strict_server, tmp_path / "operator", seeds={"roots": [seeds]})
    admin = httpx.AsyncClient(
        base_url=strict_server.url, headers={"Authorization": f"Bearer {strict_server.admin_token}"}
    )
    async with admin, running_operator(settings) as op:
        async with asyncio.timeout(10):
            await op.app.state.follower.connected.wait()
        assert (await op.http.post("/apply", json=spec(1, notes="notes-1.md"))).json()["success"] is True
        await _caught_up(op, admin)
        # The room is managed now: the events of this apply's writes reach a room the operator watches.
        assert (await op.http.post("/apply", json=spec(2, notes="notes-2.md"))).json()["success"] is True
        await _caught_up(op, admin)  # the reseed has been reported
        metrics = (await op.http.get("/metrics")).text
        assert "room_operator_reconcile_attempts_total 2.0" in metrics
        # Someone else's change is news, and is corrected at once.
        async with sse_data(op.http, "/events") as entries:
            await admin.delete(f"/room/{ROOM}/entities/E-agent-1")
            async with asyncio.timeout(10):
                async for entry in entries:
                    if entry.get("roomId") == ROOM and entry.get("action") == "entity.joined":
                        break
        await _caught_up(op, admin)
        metrics = (await op.http.get("/metrics")).text
        assert "room_operator_reconcile_attempts_total 3.0" in metrics
        assert "room_operator_drift_detected_total 1.0" in metrics
