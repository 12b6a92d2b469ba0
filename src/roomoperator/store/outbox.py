"""The store's notification part: the outbox (one row per notification and webhook target, its id the
delivery's idempotency key) and the log of delivery attempts. A notification is written before anyone
tries to send it and settled with its attempt in one transaction, so a restart resends what was not
settled (at least once, never under a new key). Delivered notifications are pruned, with their attempts,
once older than the sender's retention (`prune`); pending and failed ones stay."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

from sqlalchemy import delete, select

from roomoperator.store.repository import Store, aware, record_of
from roomoperator.store.tables import DeliveryRow, OutboxRow

OutboxStatus = Literal["pending", "delivered", "failed"]


@dataclass(frozen=True)
class OutboxItem:
    """A notification for one target; `body` is the exact JSON text sent."""

    id: str
    target: str
    kind: str
    room_id: str
    body: str
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    status: OutboxStatus = "pending"
    attempts: int = 0
    delivered_at: dt.datetime | None = None
    last_status: int | None = None
    last_error: str | None = None


@dataclass(frozen=True)
class Attempt:
    """One delivery attempt: the receiver's status code, or the error that prevented an answer."""

    notification_id: str
    attempt: int
    at: dt.datetime
    status_code: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Delivery:
    """A notification with its attempts, as the delivery log shows it."""

    item: OutboxItem
    attempts: list[Attempt] = field(default_factory=list)


async def enqueue(store: Store, items: Sequence[OutboxItem]) -> None:
    """Write notifications to the outbox (one transaction)."""
    if items:
        async with store.writing(), store.sessions.begin() as session:
            session.add_all(OutboxRow(**asdict(item)) for item in items)


async def due(store: Store, *, now: dt.datetime, limit: int = 50) -> list[OutboxItem]:
    """Pending notifications whose next attempt is due, oldest first."""
    query = (
        select(OutboxRow)
        .where(OutboxRow.status == "pending", OutboxRow.next_attempt_at <= now)
        .order_by(OutboxRow.next_attempt_at, OutboxRow.created_at)
        .limit(limit)
    )
    async with store.sessions() as session:
        return [record_of(OutboxItem, row) for row in (await session.scalars(query)).all()]


async def next_due(store: Store) -> dt.datetime | None:
    """When the earliest pending notification is due (None: nothing pending)."""
    query = (
        select(OutboxRow.next_attempt_at)
        .where(OutboxRow.status == "pending")
        .order_by(OutboxRow.next_attempt_at)
    )
    async with store.sessions() as session:
        return aware(await session.scalar(query.limit(1)))


async def settle(
    store: Store,
    attempt: Attempt,
    *,
    status: OutboxStatus,
    next_attempt_at: dt.datetime,
) -> None:
    """Record an attempt and the notification's new state (one transaction)."""
    async with store.writing(), store.sessions.begin() as session:
        row = await session.get(OutboxRow, attempt.notification_id)
        if row is None:
            return
        session.add(DeliveryRow(**asdict(attempt)))
        row.attempts, row.status, row.next_attempt_at = attempt.attempt, status, next_attempt_at
        row.last_status, row.last_error = attempt.status_code, attempt.error
        if status == "delivered":
            row.delivered_at = attempt.at


async def deliveries(
    store: Store, *, limit: int = 100, status: OutboxStatus | None = None, room_id: str | None = None
) -> list[Delivery]:
    """The newest notifications (filtered by status or room), each with its attempts in order."""
    query = select(OutboxRow).order_by(OutboxRow.created_at.desc(), OutboxRow.id).limit(limit)
    if status is not None:
        query = query.where(OutboxRow.status == status)
    if room_id is not None:
        query = query.where(OutboxRow.room_id == room_id)
    async with store.sessions() as session:
        items = [record_of(OutboxItem, row) for row in (await session.scalars(query)).all()]
        ids = [item.id for item in items]
        attempts = (
            await session.scalars(
                select(DeliveryRow)
                .where(DeliveryRow.notification_id.in_(ids))
                .order_by(DeliveryRow.notification_id, DeliveryRow.attempt)
            )
        ).all()
    by_id: dict[str, list[Attempt]] = {}
    for row in attempts:
        by_id.setdefault(row.notification_id, []).append(record_of(Attempt, row))
    return [Delivery(item, by_id.get(item.id, [])) for item in items]


async def prune(store: Store, *, delivered_before: dt.datetime) -> int:
    """Delete the notifications delivered before `delivered_before`, and their attempts (one
    transaction); how many were deleted. Pending and failed notifications are never pruned."""
    old = select(OutboxRow.id).where(
        OutboxRow.status == "delivered", OutboxRow.delivered_at < delivered_before
    )
    async with store.writing(), store.sessions.begin() as session:
        ids = list((await session.scalars(old)).all())
        for start in range(0, len(ids), 500):  # SQLite's bound on the parameters of one statement
            chunk = ids[start : start + 500]
            await session.execute(delete(DeliveryRow).where(DeliveryRow.notification_id.in_(chunk)))
            await session.execute(delete(OutboxRow).where(OutboxRow.id.in_(chunk)))
    return len(ids)
