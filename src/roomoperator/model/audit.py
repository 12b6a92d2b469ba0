"""Audit entries: what the engine and the service record about every action (reference `AuditLog`).

The engine writes entries through an `AuditSink`; the service's store persists them, streams them on
`GET /events` and answers `GET /audit`. The JSON shape is the reference's (`type, action, correlationId,
timestamp, operatorVersion, specVersion, metadata`) plus `roomId` and `actor`.

A write to the room server is audited whole through a `Journal`: its `Intent` (the entry it will have)
is recorded durably before the call, and settled with the entry, in one transaction, once the call
returned. What a crash leaves open is settled at the next start from the room server's own record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class AuditEntry(BaseModel):
    """One audited action, e.g. `entity.joined {entityId}` or `reconcile.guardrail_refused`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: Literal["event", "command"] = "event"
    action: str
    correlation_id: str
    timestamp: dt.datetime = Field(default_factory=utcnow)
    operator_version: str
    spec_version: int
    room_id: str
    actor: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)


class AuditSink(Protocol):
    """Where audit entries go (the store, a list in tests, nowhere for one-shot CLI runs)."""

    async def record(self, entry: AuditEntry) -> None: ...


class Intent(BaseModel):
    """A write the engine is about to make: `op` on `target` in the entry's room, planned from the room's
    state at revision `since` (the id of its last event then), and the audit `entry` it gets once made."""

    model_config = ConfigDict(frozen=True)

    id: str
    op: str
    target: str
    since: int
    entry: AuditEntry


class Journal(Protocol):
    """Durable intents: recorded before their writes, settled after them (with the audit entry of a write
    that was made, or none), so the audit log loses no write to a crash."""

    async def intend(self, intents: Sequence[Intent]) -> None: ...

    async def settle(self, settled: Sequence[tuple[Intent, AuditEntry | None]]) -> None:
        """Drop each intent and persist the audit entry of its write (None: not made), all in one
        transaction, in order."""
