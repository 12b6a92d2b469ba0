"""SQLAlchemy 2 table definitions of the store (the alembic migrations create exactly these)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Table, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
AutoId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    type_annotation_map = {  # noqa: RUF012  (SQLAlchemy reads this class attribute)
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
        dt.datetime: DateTime(timezone=True),
    }


class RoomRow(Base):
    """One room the operator knows: its desired spec (when managed) and its latest status."""

    __tablename__ = "rooms"

    room_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    managed: Mapped[bool] = mapped_column(default=False)
    spec: Mapped[dict[str, Any] | None]
    spec_version: Mapped[int | None]
    revision: Mapped[int] = mapped_column(default=0)
    """The revision of the desired spec."""
    latest_revision: Mapped[int] = mapped_column(default=0)
    """The latest accepted revision (compare-and-set by every acceptance)."""
    pending_revision: Mapped[int | None]
    """The accepted revision runs go towards until one gets past the guardrails (None: the desired one)."""
    base_dir: Mapped[str | None] = mapped_column(Text)
    confirmed: Mapped[bool] = mapped_column(default=False)
    conditions: Mapped[list[Any]] = mapped_column(default=list)
    cycles_since_converged: Mapped[int] = mapped_column(default=0)
    last_reconcile: Mapped[dt.datetime | None]
    last_result: Mapped[dict[str, Any] | None]
    updated_at: Mapped[dt.datetime]
    source: Mapped[str | None] = mapped_column(String(64))
    """The GitOps source that owns the room (None: none; `POST /apply` and `roomop up` own no room)."""


class SpecVersionRow(Base):
    """Every spec accepted for a room (a revision): who, when, its content digest and seed digests, the
    seed folder it resolved against, the revision it restored, when it became desired, with which diff."""

    __tablename__ = "spec_versions"
    __table_args__ = (UniqueConstraint("room_id", "revision"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[int]
    spec_version: Mapped[int]
    spec: Mapped[dict[str, Any]]
    actor: Mapped[str | None] = mapped_column(String(200))
    correlation_id: Mapped[str] = mapped_column(String(64))
    diff: Mapped[dict[str, Any] | None]
    applied_at: Mapped[dt.datetime]
    digest: Mapped[str | None] = mapped_column(String(64))
    seeds: Mapped[dict[str, Any] | None]
    base_dir: Mapped[str | None] = mapped_column(Text)
    confirmed: Mapped[bool] = mapped_column(default=False)
    restored_from: Mapped[int | None]
    desired_at: Mapped[dt.datetime | None]
    source: Mapped[str | None] = mapped_column(String(64))
    source_revision: Mapped[str | None] = mapped_column(String(64))
    """The source's revision the spec was read at (a git commit, a folder's content digest)."""


class RunRow(Base):
    """One reconcile run (requested, queued, running or finished) and its result."""

    __tablename__ = "runs"

    correlation_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    room_id: Mapped[str] = mapped_column(String(64), index=True)
    trigger: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    dry_run: Mapped[bool] = mapped_column(default=False)
    confirm: Mapped[bool] = mapped_column(default=False)
    actor: Mapped[str | None] = mapped_column(String(200))
    spec: Mapped[dict[str, Any] | None]
    base_dir: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None]
    superseded_by: Mapped[str | None] = mapped_column(String(64))
    revision: Mapped[int | None]
    superseded_by_revision: Mapped[int | None]
    created_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]


class AuditRow(Base):
    """One audit entry (the reference's shape plus room id and actor)."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_room_id_id", "room_id", "id"),)

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    type: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(100), index=True)
    correlation_id: Mapped[str] = mapped_column(String(64), index=True)
    timestamp: Mapped[dt.datetime] = mapped_column(index=True)
    operator_version: Mapped[str] = mapped_column(String(50))
    spec_version: Mapped[int]
    room_id: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str | None] = mapped_column(String(200))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)


class IntentRow(Base):
    """A write the engine announced and has not settled yet (deleted when settled): what a crash leaves
    here is settled at the next start from the room server's state and event log."""

    __tablename__ = "intents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    correlation_id: Mapped[str] = mapped_column(String(64))
    room_id: Mapped[str] = mapped_column(String(64))
    op: Mapped[str] = mapped_column(String(32))
    target: Mapped[str] = mapped_column(Text)
    since: Mapped[int] = mapped_column(BigInteger)
    entry: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime]


class SourceRow(Base):
    """One GitOps source (a folder, a git repository path): what it last fetched, attempted and applied
    (as Flux's `lastAttemptedRevision` / `lastAppliedRevision`), its current errors and the rooms it
    declares."""

    __tablename__ = "sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    location: Mapped[str] = mapped_column(Text)
    fetched_revision: Mapped[str | None] = mapped_column(String(64))
    fetched_at: Mapped[dt.datetime | None]
    attempted_revision: Mapped[str | None] = mapped_column(String(64))
    applied_revision: Mapped[str | None] = mapped_column(String(64))
    applied_at: Mapped[dt.datetime | None]
    errors: Mapped[list[Any]] = mapped_column(default=list)
    rooms: Mapped[dict[str, Any]] = mapped_column(default=dict)
    """Room id -> the file (relative to the source's folder) that declares it."""
    updated_at: Mapped[dt.datetime]


class OutboxRow(Base):
    """One notification for one webhook target (its id is the delivery's idempotency key), kept until
    delivered or given up, so a restart loses none."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    target: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[dt.datetime]
    next_attempt_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]
    last_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)


class DeliveryRow(Base):
    """One attempt to deliver a notification: when, the receiver's status code or the error."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(AutoId, primary_key=True, autoincrement=True)
    notification_id: Mapped[str] = mapped_column(String(36), index=True)
    attempt: Mapped[int]
    at: Mapped[dt.datetime]
    status_code: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)


class ReplicaRow(Base):
    """One operator replica on this store: when it started and last heartbeat (by the database's clock)."""

    __tablename__ = "replicas"

    replica_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    started_at: Mapped[dt.datetime]
    heartbeat_at: Mapped[dt.datetime]
    url: Mapped[str | None] = mapped_column(Text)
    """Where the replica's API answers (informational)."""


class RoomLeaseRow(Base):
    """Which replica owns a room until when; `epoch` (the fencing token) grows by one at each take."""

    __tablename__ = "room_leases"
    __table_args__ = (Index("ix_room_leases_holder", "holder"),)

    room_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    epoch: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[dt.datetime]


# The tables themselves, for Core statements: a statement on an ORM class goes through the ORM's bulk
# machinery even when no object is involved, at several times the cost of the plain Core statement.
ROOMS, RUNS, VERSIONS, INTENTS, AUDIT = (
    cast(Table, row.__table__) for row in (RoomRow, RunRow, SpecVersionRow, IntentRow, AuditRow)
)
