"""The outbox's retention: delivered notifications (and their attempts) are deleted once older than
`DELIVERED_RETENTION`, at most every `PRUNE_EVERY`; pending and failed ones stay. A real store, a real
receiver on 127.0.0.1 and an unreachable target."""

from __future__ import annotations

import asyncio
import contextlib

from pydantic import SecretStr

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import NotificationKind
from roomoperator.notifications.delivery import DELIVERED_RETENTION, PRUNE_EVERY, Notifier
from roomoperator.notifications.messages import Notice
from roomoperator.settings import NotificationSettings, NotificationTarget
from roomoperator.store import Store
from roomoperator.store.outbox import deliveries
from tests.notifications.conftest import SECRET, eventually, receiving
from tests.store.conftest import store
from tests.support.servers import free_port

__all__ = ["store"]  # the store fixture: SQLite and the local PostgreSQL


async def test_delivered_notifications_are_pruned_after_the_retention_and_the_rest_kept(store: Store) -> None:
    async with receiving() as receiver:
        down = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: its deliveries stay pending
        settings = NotificationSettings(
            targets=[
                NotificationTarget(name="hook", url=receiver.url, secret=SecretStr(SECRET)),
                NotificationTarget(name="down", url=down, timeout_seconds=2),
            ],
            retry_initial_seconds=3600,
        )
        notifier = Notifier(settings, store, operator_version="test")
        for index in range(3):
            await notifier.notify(Notice(NotificationKind.RUN_FAILED, f"room-keep-{index}", "failed"))
        sender = asyncio.create_task(notifier.run())
        try:
            await receiver.wait_for(3)

            async def settled() -> list[str] | None:
                items = await deliveries(store)
                statuses = sorted(delivery.item.status for delivery in items)
                pending = [d for d in items if d.item.status == "pending" and d.item.attempts]
                return statuses if statuses.count("delivered") == 3 and len(pending) == 3 else None

            assert await eventually(settled) == ["delivered"] * 3 + ["pending"] * 3
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
    now = utcnow()
    assert await notifier.prune(now=now) == 0  # the loop pruned at its start: not again within PRUNE_EVERY
    later = now + PRUNE_EVERY + DELIVERED_RETENTION
    assert await notifier.prune(now=later) == 3
    await notifier.notify(Notice(NotificationKind.RUN_FAILED, "room-keep-9", "failed"))  # pending for now
    assert await notifier.prune(now=later + PRUNE_EVERY + DELIVERED_RETENTION) == 0
    kept = await deliveries(store)
    assert sorted((d.item.room_id, d.item.target, d.item.status) for d in kept) == [
        *((f"room-keep-{index}", "down", "pending") for index in range(3)),
        ("room-keep-9", "down", "pending"),
        ("room-keep-9", "hook", "pending"),
    ]
    assert all(d.attempts for d in kept if d.item.room_id != "room-keep-9")  # their attempts are kept
