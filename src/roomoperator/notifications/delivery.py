"""Delivering notifications: `Notifier.notify` writes one outbox row per subscribed target (durable
before anything is sent), and its `run()` loop sends what is due, each attempt settled in the store with
its answer; a failed attempt is retried after the one backoff formula's delay until `max_attempts`. A
restart resumes the pending rows, so delivery is at least once, under the same idempotency key.

Retention: a delivered notification (and its attempts) is deleted `DELIVERED_RETENTION` after its
delivery, checked at most every `PRUNE_EVERY` by the same loop; pending and failed ones are kept (a
failed one is what a person may still need to look at in `GET /notifications/deliveries`)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
import uuid

import structlog

from roomoperator.clients.webhooks import WebhookAnswer, WebhookClient
from roomoperator.model.audit import utcnow
from roomoperator.model.backoff import Backoff
from roomoperator.notifications.messages import Notice, body_of, headers_of, wanted
from roomoperator.settings import NotificationSettings, NotificationTarget
from roomoperator.store import Store
from roomoperator.store.outbox import Attempt, OutboxItem, due, enqueue, next_due, prune, settle

log = structlog.get_logger(__name__)

IDLE_SECONDS = 60.0
"""Longest sleep of the loop with nothing due (a new notification wakes it at once)."""
DELIVERED_RETENTION = dt.timedelta(days=7)
"""How long a delivered notification stays in the outbox and the delivery log."""
PRUNE_EVERY = dt.timedelta(hours=1)


class Notifier:
    """The outbox and its sender for the configured targets."""

    def __init__(self, settings: NotificationSettings, store: Store, *, operator_version: str) -> None:
        self.settings = settings
        self._targets = {target.name: target for target in settings.targets}
        self._store = store
        self._operator = operator_version
        self._backoff = Backoff(settings.retry_initial_seconds, settings.retry_max_seconds)
        self._client = WebhookClient()
        self._wake = asyncio.Event()
        self._pruned_at: dt.datetime | None = None

    @property
    def enabled(self) -> bool:
        return bool(self._targets)

    async def notify(self, notice: Notice) -> list[str]:
        """Queue `notice` for every target that subscribes to it; the deliveries' ids."""
        now = utcnow()
        items = []
        for target in self._targets.values():
            if not wanted(target, notice):
                continue
            delivery = str(uuid.uuid4())
            items.append(
                OutboxItem(
                    id=delivery,
                    target=target.name,
                    kind=notice.kind.value,
                    room_id=notice.room_id,
                    body=body_of(notice, target, delivery=delivery, at=now, operator=self._operator),
                    created_at=now,
                    next_attempt_at=now,
                )
            )
        await enqueue(self._store, items)
        if items:
            self._wake.set()
        return [item.id for item in items]

    async def run(self) -> None:
        """Send what is due, forever; sleep until the next retry or a new notification."""
        try:
            while True:
                self._wake.clear()
                await self.prune()
                for item in await due(self._store, now=utcnow()):
                    await self._deliver(item)
                upcoming = await next_due(self._store)
                wait = IDLE_SECONDS if upcoming is None else (upcoming - utcnow()).total_seconds()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_SECONDS))
        finally:
            await self._client.aclose()

    async def prune(self, *, now: dt.datetime | None = None) -> int:
        """Delete what was delivered more than `DELIVERED_RETENTION` ago, at most every `PRUNE_EVERY`
        (`now`: the clock to judge by); how many notifications were deleted."""
        moment = now or utcnow()
        if self._pruned_at is not None and moment - self._pruned_at < PRUNE_EVERY:
            return 0
        self._pruned_at = moment
        deleted = await prune(self._store, delivered_before=moment - DELIVERED_RETENTION)
        if deleted:
            log.info("delivered notifications pruned", count=deleted, older_than=str(DELIVERED_RETENTION))
        return deleted

    async def _deliver(self, item: OutboxItem) -> None:
        target = self._targets.get(item.target)
        attempt = item.attempts + 1
        now = utcnow()
        if target is None:  # a target removed from the settings: its notifications are given up
            record = Attempt(item.id, attempt, now, error=f"no target {item.target} in the settings")
            await settle(self._store, record, status="failed", next_attempt_at=now)
            return
        answer = await self._post(target, item)
        record = Attempt(item.id, attempt, utcnow(), status_code=answer.status, error=answer.error)
        if answer.ok:
            await settle(self._store, record, status="delivered", next_attempt_at=record.at)
            return
        gave_up = attempt >= self.settings.max_attempts
        delay = dt.timedelta(seconds=self._backoff.delay(attempt))
        await settle(
            self._store, record, status="failed" if gave_up else "pending", next_attempt_at=record.at + delay
        )
        log.warning(
            "notification not delivered",
            target=target.name,
            delivery=item.id,
            attempt=attempt,
            status=answer.status,
            error=answer.error,
            retry_in=None if gave_up else delay.total_seconds(),
        )

    async def _post(self, target: NotificationTarget, item: OutboxItem) -> WebhookAnswer:
        body = item.body.encode()
        headers = headers_of(target, body, delivery=item.id, kind=item.kind, timestamp=int(time.time()))
        return await self._client.post(target.url, body, headers=headers, seconds=target.timeout_seconds)
