"""The store's batched writes: everything one finished run records, in one room transaction.

A run that reached APPLY used to cost three transactions after it (the revision made desired, the room's
status, the run's row), each loading the room's whole row through the ORM (its spec, conditions and last
result decoded from JSON) to change a few columns. `finish_run` makes them one transaction of Core
`UPDATE`s (`Store.room_transaction`: one lease check in replica mode): the desired spec is copied from
its revision's row inside the database, nothing is read back, and a part with nothing to record is not
written. `run_started` is the run's other write, as one Core `UPDATE`. The controller calls both through
`RunLedger` (`service/runs.py`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Any, cast

from sqlalchemy import Table, case, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from roomoperator.model.audit import utcnow
from roomoperator.store.records import RunRecord, RunStatus
from roomoperator.store.repository import Store
from roomoperator.store.tables import RoomRow, RunRow, SpecVersionRow

# The tables themselves, not the ORM classes: a statement on a class goes through the ORM's bulk
# machinery even when no object is involved, at several times the cost of the plain Core statement.
ROOMS, RUNS, VERSIONS = (cast(Table, row.__table__) for row in (RoomRow, RunRow, SpecVersionRow))


@dataclass(frozen=True)
class Desired:
    """Revision `revision` got past the guardrails (`confirmed`: with `X-Confirm`), with its run's diff."""

    revision: int
    confirmed: bool
    diff: dict[str, Any] | None = None


@dataclass(frozen=True)
class StoredStatus:
    """The room's status after the run."""

    conditions: list[dict[str, Any]]
    cycles_since_converged: int
    last_result: dict[str, Any] | None
    pending_revision: int | None = None
    """The revision the room's runs go towards while none got past the guardrails."""


@dataclass(frozen=True)
class RunOutcome:
    """A run row accepted earlier (`correlation_id`) now finished with `status` and `result`."""

    correlation_id: str
    status: RunStatus
    result: dict[str, Any] | None


def run_values(run: RunRecord) -> dict[str, Any]:
    """The column values of `run` (shallow: its spec and result dicts are not copied)."""
    return {field.name: getattr(run, field.name) for field in fields(run)}


async def finish_run(
    store: Store,
    room_id: str,
    *,
    desired: Desired | None = None,
    status: StoredStatus | None = None,
    run: RunOutcome | RunRecord | None = None,
) -> None:
    """Record, in one transaction, what a run of `room_id` concluded: its revision became `desired` (the
    room's desired spec is then that revision's), the room's `status`, and the run (`RunOutcome`: an
    existing row finished; `RunRecord`: a new, finished row). Raises `KeyError` (nothing written) when
    the room has no revision `desired.revision`; adds the room's row when it has none."""
    now = utcnow()
    async with store.room_transaction(room_id) as session:
        connection = await session.connection()
        room: dict[str, Any] = {}
        if desired is not None:
            room |= await _desire(connection, room_id, desired, now)
        if status is not None:
            room |= {
                "conditions": status.conditions,
                "cycles_since_converged": status.cycles_since_converged,
                "last_reconcile": now,
                "last_result": status.last_result,
                "pending_revision": status.pending_revision,
            }
        if room:
            await _update_room(connection, room_id, room | {"updated_at": now})
        if isinstance(run, RunRecord):
            await connection.execute(insert(RUNS).values(run_values(run)))
        elif run is not None:
            await connection.execute(
                update(RUNS)
                .where(RUNS.c.correlation_id == run.correlation_id)
                .values(status=run.status, result=run.result, finished_at=now)
            )


async def run_started(store: Store, room_id: str, correlation_id: str) -> None:
    """The run row `correlation_id` of `room_id` is running now (one Core `UPDATE`)."""
    async with store.room_transaction(room_id) as session:
        connection = await session.connection()
        await connection.execute(
            update(RUNS).where(RUNS.c.correlation_id == correlation_id).values(status="running")
        )


async def _desire(
    connection: AsyncConnection, room_id: str, desired: Desired, now: dt.datetime
) -> dict[str, Any]:
    """Mark the revision desired; the room's columns that take its spec (copied inside the database)."""
    of_revision = (VERSIONS.c.room_id == room_id) & (VERSIONS.c.revision == desired.revision)
    marked = await connection.execute(
        update(VERSIONS).where(of_revision).values(desired_at=now, diff=desired.diff)
    )
    if not marked.rowcount:
        raise KeyError(f"room {room_id} has no revision {desired.revision}")
    copied = {
        name: select(VERSIONS.c[name]).where(of_revision).scalar_subquery()
        for name in ("spec", "spec_version", "base_dir")
    }
    latest = ROOMS.c.latest_revision
    return copied | {
        "managed": True,
        "revision": desired.revision,
        "confirmed": desired.confirmed,
        "pending_revision": None,
        "latest_revision": case((latest < desired.revision, desired.revision), else_=latest),
    }


async def _update_room(connection: AsyncConnection, room_id: str, values: dict[str, Any]) -> None:
    """Update the room's row, adding it first (unmanaged, never reconciled) when the room has none."""
    statement = update(ROOMS).where(ROOMS.c.room_id == room_id).values(values)
    if (await connection.execute(statement)).rowcount:
        return
    # The other columns take their defaults: unmanaged, no revision, no conditions.
    await connection.execute(insert(ROOMS).values(room_id=room_id, updated_at=values["updated_at"]))
    await connection.execute(statement)
