"""Audit entries: what the engine and the service record about every action (reference `AuditLog`).

The engine writes entries through an `AuditSink`; the service's store persists them, streams them on
`GET /events` and answers `GET /audit`. The JSON shape is the reference's (`type, action, correlationId,
timestamp, operatorVersion, specVersion, metadata`) plus `roomId` and `actor`.
"""

from __future__ import annotations

import datetime as dt
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
