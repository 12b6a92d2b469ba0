"""`store/batching.py` on SQLite and PostgreSQL: a finished run's desired revision, room status and run row
in one transaction, the same rows the separate writes made."""

from __future__ import annotations

import pytest

from roomoperator.model.audit import utcnow
from roomoperator.store import RunRecord, SpecVersion, Store
from roomoperator.store.batching import Desired, RunBook, RunOutcome, StoredStatus

ROOM = "room-batch-01"


def revision(number: int) -> SpecVersion:
    spec = {"metadata": {"name": "batch", "version": number}, "spec": {"roomId": ROOM}}
    return SpecVersion(
        room_id=ROOM,
        revision=number,
        spec_version=number,
        spec=spec,
        actor=None,
        correlation_id=f"c{number}",
        diff=None,
        applied_at=utcnow(),
        base_dir=f"/seeds/{number}",
    )


def queued(number: int) -> RunRecord:
    return RunRecord(f"c{number}", ROOM, "apply", "queued", utcnow(), revision=number)


STATUS = StoredStatus([{"type": "Ready", "status": "True"}], 0, {"success": True})


async def test_a_finished_apply_is_desired_with_its_status_and_run_in_one_write(store: Store) -> None:
    assert await store.accept_revision(revision(1), run=queued(1))
    assert await store.accept_revision(revision(2), run=queued(2))
    body = {"success": True, "diff": {"toJoin": ["E-a"]}}
    await RunBook(store).finished(
        ROOM,
        desired=Desired(1, confirmed=True, diff=body["diff"]),
        status=STATUS,
        run=RunOutcome("c1", "succeeded", body),
    )
    room = await store.get_room(ROOM)
    assert room is not None
    assert (room.managed, room.revision, room.latest_revision, room.confirmed) == (True, 1, 2, True)
    assert (room.spec_version, room.base_dir, room.spec) == (1, "/seeds/1", revision(1).spec)
    assert (room.conditions, room.cycles_since_converged, room.last_result) == (
        STATUS.conditions, 0, {"success": True},
    )  # fmt: skip
    assert room.last_reconcile is not None
    [first, second] = await store.history(ROOM)
    assert (first.desired_at is not None, first.diff) == (True, {"toJoin": ["E-a"]})
    assert second.desired_at is None
    run = await store.get_run("c1")
    assert run is not None
    assert (run.status, run.result, run.finished_at is not None) == ("succeeded", body, True)
    queued_run = await store.get_run("c2")
    assert queued_run is not None
    assert queued_run.status == "queued"


async def test_a_loop_run_that_mattered_adds_its_row_and_a_quiet_one_only_the_status(store: Store) -> None:
    assert await store.accept_revision(revision(1), run=queued(1))
    loop = RunRecord(
        "loop-1", ROOM, "loop", "failed", utcnow(), result={"success": False}, finished_at=utcnow()
    )
    await RunBook(store).finished(ROOM, status=STATUS, run=loop)
    stored = await store.get_run("loop-1")
    assert stored is not None
    assert (stored.trigger, stored.status) == ("loop", "failed")
    room = await store.get_room(ROOM)
    assert room is not None
    assert (room.managed, room.last_result) == (False, {"success": True})  # status only, not desired


async def test_a_room_without_a_row_gets_one(store: Store) -> None:
    await RunBook(store).finished("room-new-01", status=STATUS)
    room = await store.get_room("room-new-01")
    assert room is not None
    assert (room.managed, room.revision, room.conditions) == (False, 0, STATUS.conditions)


async def test_an_unknown_revision_writes_nothing(store: Store) -> None:
    assert await store.accept_revision(revision(1), run=queued(1))
    with pytest.raises(KeyError, match="no revision 5"):
        await RunBook(store).finished(ROOM, desired=Desired(5, confirmed=False), status=STATUS,
                         run=RunOutcome("c1", "succeeded", {}))  # fmt: skip
    room = await store.get_room(ROOM)
    assert room is not None
    assert (room.managed, room.last_result) == (False, None)
    run = await store.get_run("c1")
    assert run is not None
    assert run.status == "queued"


async def test_a_started_run_is_running(store: Store) -> None:
    assert await store.accept_revision(revision(1), run=queued(1))
    await RunBook(store).started(ROOM, "c1")
    run = await store.get_run("c1")
    assert run is not None
    assert (run.status, run.finished_at) == ("running", None)
