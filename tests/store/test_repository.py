"""The store on SQLite and PostgreSQL: desired specs and history, runs, audit queries, migrations."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from roomoperator.model.audit import AuditEntry, utcnow
from roomoperator.store import RunRecord, SpecVersion, Store, StoreError, normalise_url
from roomoperator.store.batching import Desired, RunBook, StoredStatus

SPEC = {
    "apiVersion": "v1",
    "kind": "RoomSpec",
    "metadata": {"name": "lab", "version": 1},
    "spec": {"roomId": "room-lab-01"},
}


def entry(action: str, *, correlation_id: str = "c1", room_id: str = "room-lab-01") -> AuditEntry:
    return AuditEntry(
        action=action,
        correlation_id=correlation_id,
        operator_version="0.1.0",
        spec_version=1,
        room_id=room_id,
    )


def revision(number: int, *, version: int = 1, actor: str | None = None, cid: str = "c1") -> SpecVersion:
    spec = SPEC | {"metadata": {"name": "lab", "version": version}}
    return SpecVersion(
        room_id="room-lab-01",
        revision=number,
        spec_version=version,
        spec=spec,
        actor=actor,
        correlation_id=cid,
        diff=None,
        applied_at=utcnow(),
        digest=f"d{number}",
        seeds={"plan": "ab" * 32},
        base_dir="/seeds",
    )


def queued(cid: str, number: int) -> RunRecord:
    return RunRecord(cid, "room-lab-01", "apply", "queued", utcnow(), spec=SPEC, revision=number)


async def desire(store: Store, number: int, **how: Any) -> None:
    assert await store.accept_revision(revision(number, **how))
    await RunBook(store).finished("room-lab-01", desired=Desired(number, False))


async def test_revisions_are_accepted_then_desired_with_history(store: Store) -> None:
    assert await store.accept_revision(revision(1), run=queued("c1", 1))
    assert await store.accept_revision(revision(2, version=2, actor="alice", cid="c2"), run=queued("c2", 2))
    room = await store.get_room("room-lab-01")
    assert room is not None
    assert (room.managed, room.revision, room.latest_revision) == (False, 0, 2)
    await RunBook(store).finished("room-lab-01", desired=Desired(2, True, {"toJoin": ["E-a"]}))
    room = await store.get_room("room-lab-01")
    assert room is not None
    assert (room.managed, room.spec_version, room.revision, room.base_dir, room.confirmed) == (
        True, 2, 2, "/seeds", True,
    )  # fmt: skip
    history = await store.history("room-lab-01")
    assert [(h.revision, h.spec_version, h.actor, h.diff) for h in history] == [
        (1, 1, None, None),
        (2, 2, "alice", {"toJoin": ["E-a"]}),
    ]
    assert (history[0].desired_at, history[1].seeds) == (None, {"plan": "ab" * 32})
    assert history[1].applied_at.tzinfo is not None
    assert history[1].desired_at is not None
    assert (await store.latest_revisions())["room-lab-01"].revision == 2
    assert await store.revision("room-lab-01", 1) == history[0]
    run = await store.get_run("c2")
    assert run is not None
    assert (run.status, run.revision) == ("queued", 2)


async def test_a_revision_is_compare_and_set_on_the_latest_one(store: Store) -> None:
    assert await store.accept_revision(revision(1))
    tries = await asyncio.gather(
        *(store.accept_revision(revision(2, cid=f"c{n}"), run=queued(f"c{n}", 2)) for n in range(5))
    )
    assert sorted(tries) == [False, False, False, False, True]
    assert await store.accept_revision(revision(2, cid="late")) is False  # the number is taken
    assert await store.accept_revision(revision(4)) is False  # not the next one
    assert [h.revision for h in await store.history("room-lab-01")] == [1, 2]
    winner = (await store.history("room-lab-01"))[1].correlation_id
    assert [await store.get_run(f"c{n}") is not None for n in range(5)].count(True) == 1
    assert await store.get_run(winner) is not None


async def test_unmanage_keeps_history_and_is_reported_once(store: Store) -> None:
    await desire(store, 1)
    assert await store.unmanage("room-lab-01") is True
    assert await store.unmanage("room-lab-01") is False
    assert await store.list_rooms(managed_only=True) == []
    assert len(await store.history("room-lab-01")) == 1


async def test_status_is_saved_for_unknown_and_managed_rooms(store: Store) -> None:
    await RunBook(store).finished("other-1", status=StoredStatus([{"type": "Ready"}], 3, None))
    room = await store.get_room("other-1")
    assert room is not None
    assert (room.managed, room.cycles_since_converged, room.conditions) == (False, 3, [{"type": "Ready"}])
    assert room.last_reconcile is not None
    assert room.last_reconcile.tzinfo is not None


async def test_runs_move_through_their_states(store: Store) -> None:
    queued = RunRecord(
        correlation_id="r1", room_id="room-lab-01", trigger="apply", status="queued", created_at=utcnow(),
        confirm=True, spec=SPEC, base_dir="/seeds", actor="bob",
    )  # fmt: skip
    await store.add_run(queued)
    await store.add_run(RunRecord(correlation_id="r2", room_id="room-lab-01", trigger="loop",
                                  status="running", created_at=utcnow()))  # fmt: skip
    assert [r.correlation_id for r in await store.unfinished_runs()] == ["r1", "r2"]
    await store.update_run("r1", status="superseded", superseded_by="r3")
    await store.update_run("r2", status="succeeded", result={"success": True})
    assert await store.unfinished_runs() == []
    r1, r2 = await store.get_run("r1"), await store.get_run("r2")
    assert r1 is not None
    assert r2 is not None
    assert (r1.status, r1.superseded_by, r1.spec, r1.confirm, r1.actor) == (
        "superseded",
        "r3",
        SPEC,
        True,
        "bob",
    )
    assert (r2.status, r2.result) == ("succeeded", {"success": True})
    assert r2.finished_at is not None
    assert await store.get_run("missing") is None


async def test_audit_queries_filter_and_keep_order(store: Store) -> None:
    for index in range(5):
        await store.record(entry(f"a{index}", correlation_id="c1" if index < 3 else "c2"))
    await store.record(entry("other", correlation_id="c3", room_id="room-test-2"))
    assert [e.action for e in await store.audit(count=2)] == ["a4", "other"]
    assert [e.action for e in await store.audit(count=1, correlation_id="c1")] == ["a0", "a1", "a2"]
    assert [e.action for e in await store.audit(room_id="room-test-2")] == ["other"]
    assert [e.action for e in await store.audit(action="a3")] == ["a3"]
    assert await store.audit(count=0) == []
    future = utcnow() + dt.timedelta(hours=1)
    assert await store.audit(since=future) == []
    assert (await store.audit(count=1))[0].timestamp.tzinfo is not None


async def test_migrate_is_idempotent(store: Store) -> None:
    await store.migrate()
    assert await store.ping() is True


def test_plain_urls_get_async_drivers() -> None:
    assert normalise_url("sqlite:///x.db") == "sqlite+aiosqlite:///x.db"
    assert normalise_url("postgresql://u@h/db") == "postgresql+asyncpg://u@h/db"
    assert normalise_url("postgres://u:p@h/db") == "postgresql+asyncpg://u:p@h/db"
    assert normalise_url("sqlite+aiosqlite:///y.db") == "sqlite+aiosqlite:///y.db"


async def test_unreachable_database_is_a_store_error(tmp_path: Path) -> None:
    broken = Store("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="cannot open the store"):
        await broken.migrate()
    await broken.close()


async def test_data_survives_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'op.db'}"
    first = Store(url)
    await first.migrate()
    await desire(first, 1)
    await first.record(entry("x"))
    await first.close()
    again = Store(url)
    await again.migrate()
    assert [r.room_id for r in await again.list_rooms(managed_only=True)] == ["room-lab-01"]
    assert [e.action for e in await again.audit()] == ["x"]
    await again.close()


async def test_concurrent_audit_entries_are_group_committed_in_order(store: Store) -> None:
    await asyncio.gather(*(store.record(entry(f"a{index:02d}")) for index in range(50)))
    assert [e.action for e in await store.audit()] == [f"a{index:02d}" for index in range(50)]


async def test_upgrading_from_the_first_schema_keeps_rooms(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = Store(url)
    await old.migrate(revision="0001")
    async with old.engine.begin() as connection:
        await connection.exec_driver_sql(
            "INSERT INTO rooms (room_id, managed, revision, conditions, cycles_since_converged, updated_at)"
            " VALUES ('room-lab-01', 1, 1, '[]', 0, '2026-01-01 00:00:00')"
        )
    await old.close()
    new = Store(url)
    await new.migrate()
    room = await new.get_room("room-lab-01")
    assert room is not None
    assert (room.managed, room.confirmed, room.latest_revision) == (True, False, 1)
    await new.close()
