"""The run events that become notifications (`service/observing.py`'s `NotificationObserver`), written
to a real store's outbox: a failed run, a stalled room and its recovery; a quiet run notifies nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode
from roomoperator.model.results import Phase, RunResult
from roomoperator.notifications.delivery import Notifier
from roomoperator.service.observing import NotificationObserver, RoomStalled, RunFinished
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
