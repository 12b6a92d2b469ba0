"""Delivering notifications: `Notifier.notify` writes one outbox row per subscribed target (durable
before anything is sent), and its `run()` loop sends what is due, each attempt settled in the store with
its answer; a failed attempt is retried after the one backoff formula's delay until `max_attempts`. A
restart resumes the pending rows, so delivery is at least once, under the same idempotency key."""

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
from roomoperator.store.outbox import Attempt, OutboxItem, due, enqueue, next_due, settle

log = structlog.get_logger(__name__)

IDLE_SECONDS = 60.0
"""Longest sleep of the loop with nothing due (a new notification wakes it at once)."""


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
                for item in await due(self._store, now=utcnow()):
                    await self._deliver(item)
                upcoming = await next_due(self._store)
                wait = IDLE_SECONDS if upcoming is None else (upcoming - utcnow()).total_seconds()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), min(wait, IDLE_SECONDS))
        finally:
            await self._client.aclose()

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
