"""The run events that become notifications (`service/observing.py`'s `NotificationObserver`), written
to a real store's outbox: a failed run, a stalled room and its recovery; a quiet run notifies nothing; a
drift correction names who changed the room before its run read it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.notifications.delivery import Notifier
from roomoperator.service.changers import MAX_ACTORS, Changers
from roomoperator.service.observing import NotificationObserver, RoomChangedBy, RoomStalled, RunFinished
from roomoperator.service.runs import RunRequest
from roomoperator.settings import NotificationSettings
from roomoperator.store import Store
from roomoperator.store.outbox import deliveries

ROOM = "room-observe-01"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'operator.db'}")
    await store.migrate()
    yield store
    await store.close()


def result(*, success: bool, converged: bool | None, code: RunCode | None = None) -> RunResult:
    return RunResult(
        success=success,
        correlation_id="c-1",
        room_id=ROOM,
        spec_version=1,
        phase=Phase.VERIFY,
        code=code,
        errors=() if success else ("the room server said no",),
        converged=converged,
        started_at=utcnow(),
    )


async def test_failed_stalled_and_recovered(store: Store) -> None:
    settings = NotificationSettings.model_validate({"targets": [{"name": "t", "url": "http://127.0.0.1:9/"}]})
    observer = NotificationObserver(Notifier(settings, store, operator_version="1"))
    request = RunRequest.of(ROOM, "loop")
    await observer.observe(RunFinished(request, result(success=True, converged=True), changed=False))
    failed = result(success=False, converged=False, code=RunCode.ROOM_SERVER_ERROR)
    await observer.observe(RunFinished(request, failed, changed=False))
    await observer.observe(RoomStalled(failed, 10))
    await observer.observe(RunFinished(request, result(success=True, converged=True), changed=False))
    await observer.observe(RunFinished(request, result(success=True, converged=True), changed=False))
    found = list(reversed(await deliveries(store)))
    assert [delivery.item.kind for delivery in found] == ["run.failed", "room.stalled", "room.recovered"]
    body = json.loads(found[0].item.body)
    assert body["details"]["code"] == "ROOM_SERVER_ERROR"
    assert "the room server said no" in body["summary"]
    assert json.loads(found[1].item.body)["details"]["cyclesSinceConverged"] == 10


def drift(room_revision: int, *applied: str) -> RunResult:
    return result(success=True, converged=True).model_copy(
        update={"applied": applied, "room_revision": room_revision}
    )


async def test_drift_names_who_changed_the_room_before_the_run_read_it(store: Store) -> None:
    settings = NotificationSettings.model_validate({"targets": [{"name": "t", "url": "http://127.0.0.1:9/"}]})
    observer = NotificationObserver(Notifier(settings, store, operator_version="1"))
    request = RunRequest.of(ROOM, "event")
    for actor, seq in (("E-agent-1", 4), ("admin", 5), ("E-agent-1", 6), ("E-late", 9)):
        observer.room_changed(RoomChangedBy(ROOM, actor, seq))
    failed = result(success=False, converged=False, code=RunCode.ROOM_SERVER_ERROR)
    await observer.observe(RunFinished(request, failed, changed=True))  # corrected nothing: keeps them
    await observer.observe(RunFinished(request, drift(7, "entity E-agent-1 updated"), changed=True))
    await observer.observe(RunFinished(request, drift(10, "entity E-agent-1 updated"), changed=True))
    await observer.observe(RunFinished(request, drift(11, "entity E-agent-1 updated"), changed=True))
    found = [json.loads(d.item.body) for d in reversed(await deliveries(store))]
    assert [body["kind"] for body in found] == ["run.failed", *["drift.corrected"] * 3]
    # The first correction read the room at 7: E-late's change (9) is the next one's.
    assert [body["details"]["changedBy"] for body in found[1:]] == [["admin", "E-agent-1"], ["E-late"], []]
    assert found[1]["summary"].endswith("(changed by admin, E-agent-1)")
    assert "changed by" not in found[3]["summary"]


def test_changers_keep_the_most_recent_actors_of_a_room() -> None:
    changers = Changers()
    for index in range(MAX_ACTORS + 2):
        changers.seen(ROOM, f"E-agent-{index}", index)
    changers.seen("room-other-01", "admin", 1)
    changers.forget("room-other-01")
    assert changers.take("room-other-01", read_at=None) == ()
    assert changers.take(ROOM, read_at=None) == tuple(f"E-agent-{i}" for i in range(2, MAX_ACTORS + 2))
    assert changers.take(ROOM, read_at=None) == ()
