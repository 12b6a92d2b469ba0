"""The audit stays whole across `kill -9`: every write the room server made has exactly one audit entry.

The operator records the intent of each write before it calls the room server, and settles it with the
write's audit entry in one transaction; on restart it settles what a crash left open from the room
server's state and event log. The test kills a `roomop serve` process in the middle of joining a few
hundred entities (while joins are in flight), restarts it on the same store, and counts.
"""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomoperator.engine.settling import judge
from roomoperator.model.audit import AuditEntry, Intent
from roomoperator.model.observed import ObservedRoom
from roomoperator.store import Store
from tests.service.conftest import room_spec, sse_data
from tests.service.test_durability import roomop_serve
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port

ROOM = "room-audit-kill-1"
ENTITIES = 300
KILL_AFTER = 60
# Single writes: a batch makes the 300 joins in one transaction, with nothing in flight to interrupt.
FAST = {"ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "2000", "ROOMOP_ROOM_SERVER__BATCH": "false"}


async def finished(http: httpx.AsyncClient, location: str) -> dict[str, Any]:
    """The run at `location` (`/runs/{id}`) once it has finished: the operator's runs endpoint, polled
    (its status changes with no event of its own; callers bound the wait)."""
    while (run := (await http.get(location)).json())["status"] in ("queued", "running"):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    result: dict[str, Any] = run
    return result


@pytest.mark.slow
async def test_kill_9_mid_apply_leaves_exactly_one_joined_entry_per_joined_entity(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    store, port = tmp_path / "operator.db", free_port()
    url = f"http://127.0.0.1:{port}"
    with roomop_serve(roomserver, store, port, **FAST) as first:
        async with (
            httpx.AsyncClient(base_url=url, timeout=30) as http,
            sse_data(admin, "/events", roomId=ROOM) as events,
        ):
            apply = asyncio.create_task(http.post("/apply", json=room_spec(ROOM, entities=ENTITIES)))
            joins = 0
            async with asyncio.timeout(60):
                async for event in events:
                    joins += event.get("payload", {}).get("kind") == "ENTITY.JOIN"
                    if joins == KILL_AFTER:
                        break
            first.send_signal(signal.SIGKILL)  # joins are in flight: the room server is answering them
            first.wait(timeout=10)
            with pytest.raises(httpx.HTTPError):
                await apply
    joined_before = len((await admin.get(f"/room/{ROOM}/state")).json()["entities"])
    assert KILL_AFTER <= joined_before < ENTITIES, "the kill interrupted the apply"

    with roomop_serve(roomserver, store, port, **FAST):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            resumed = (await http.get("/audit", params={"roomId": ROOM, "action": "run.resumed"})).json()
            [entry] = resumed["entries"]
            async with asyncio.timeout(60):
                run = await finished(http, f"/runs/{entry['correlationId']}")
            assert run["status"] == "succeeded", run
            state = (await admin.get(f"/room/{ROOM}/state")).json()
            params = {"roomId": ROOM, "action": "entity.joined", "count": 10_000}
            audit = (await http.get("/audit", params=params)).json()["entries"]
    entities = {entity["id"] for entity in state["entities"]}
    assert len(entities) == ENTITIES
    counts = collections.Counter(e["metadata"]["entityId"] for e in audit)
    assert {name: n for name, n in counts.items() if n != 1} == {}, "an entity joined more than once"
    assert set(counts) == entities, f"joined without an audit entry: {sorted(entities - set(counts))}"
    settled = [e for e in audit if "settledFrom" in e["metadata"]]
    assert {e["metadata"]["settledFrom"] for e in settled} <= {"events"}, "the event log was read"


def intent(op: str, target: str, *, since: int = 10, **metadata: str) -> Intent:
    action = {"join": "entity.joined", "seed": "artifact.seeded", "set-policy": "policy.applied"}[op]
    entry = AuditEntry(
        action=action,
        correlation_id="c1",
        operator_version="t",
        spec_version=1,
        room_id=ROOM,
        metadata=metadata,
    )
    return Intent(id=f"{op}:{target}", op=op, target=target, since=since, entry=entry)


def event(seq: int, kind: str, **data: object) -> dict[str, object]:
    return {"seq": seq, "roomId": ROOM, "ts": "2026-12-01T10:00:00Z", "payload": {"kind": kind, "data": data}}


def test_the_event_log_after_an_intent_says_whether_its_write_was_made() -> None:
    joined, late, early = intent("join", "E-1", entityId="E-1"), intent("join", "E-2"), intent("join", "E-3")
    seeded = intent("seed", "notes", sha256="aa", artifactName="notes")
    other_bytes = intent("seed", "plan", sha256="bb")
    policy = intent("set-policy", "allowResourceCreation", value="true")
    log = [
        event(9, "ENTITY.JOIN", entity={"id": "E-3"}),  # before the plan was read: not this write
        event(11, "ENTITY.JOIN", entity={"id": "E-1"}),
        event(12, "ARTIFACT.ADDED", name="notes", version=1, sha256="aa"),
        event(13, "ARTIFACT.ADDED", name="plan", version=1, sha256="cc"),
        event(14, "POLICIES.UPDATED", policies={"allowResourceCreation": True}),
    ]
    verdicts = judge([joined, late, early, seeded, other_bytes, policy], ObservedRoom(room_id=ROOM), log)
    made = {v.intent.id: v.entry for v in verdicts if v.entry is not None}
    assert set(made) == {joined.id, seeded.id, policy.id}
    assert made[joined.id].metadata == {"entityId": "E-1", "settledFrom": "events"}
    assert made[joined.id].timestamp.isoformat() == "2026-12-01T10:00:00+00:00"
    # Without a readable log, the room's state decides.
    state = ObservedRoom.model_validate({"roomId": ROOM, "entities": [{"id": "E-2", "kind": "agent"}]})
    [verdict] = judge([late], state, None)
    assert verdict.entry is not None
    assert verdict.entry.metadata["settledFrom"] == "state"


async def test_intents_are_open_until_settled_with_their_entry(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'operator.db'}")
    await store.migrate()
    try:
        made, unmade = intent("join", "E-1", entityId="E-1"), intent("join", "E-2", entityId="E-2")
        await store.intend([made, unmade])
        assert {i.id for i in await store.open_intents()} == {made.id, unmade.id}
        await asyncio.gather(store.settle([(made.id, made.entry)]), store.settle([(unmade.id, None)]))
        assert await store.open_intents() == []
        entries = await store.audit(room_id=ROOM)
        assert [(e.action, e.metadata) for e in entries] == [("entity.joined", {"entityId": "E-1"})]
        # Several settled at once: one transaction, their entries in the given order.
        first, second, third = (intent("join", f"E-{n}", entityId=f"E-{n}") for n in (3, 4, 5))
        await store.intend([first, second, third])
        await store.settle([(second.id, second.entry), (third.id, None), (first.id, first.entry)])
        assert await store.open_intents() == []
        entries = await store.audit(room_id=ROOM)
        assert [e.metadata["entityId"] for e in entries] == ["E-1", "E-4", "E-3"]
    finally:
        await store.close()
