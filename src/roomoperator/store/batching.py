"""The runs' bookkeeping writes, group-committed: a run started, and what a finished run concluded (its
revision made desired, the room's status, its row), for many rooms in one transaction.

A run that reached APPLY used to cost three transactions after it, each loading the room's whole row
through the ORM to change a few columns; then one transaction of Core `UPDATE`s a run; now runs of
different rooms finishing together share one (`store/committing.py`), with one statement of each kind
for all of them (`executemany`) and, in replica mode, one lease check for all their rooms. The desired
spec is copied from its revision's row inside the database and nothing is read back. The controller
writes through one `RunBook` (`RunLedger`, `service/runs.py`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Update, bindparam, case, insert, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from roomoperator.model.audit import utcnow
from roomoperator.store.committing import GroupCommit
from roomoperator.store.errors import FencedError
from roomoperator.store.leases import Write
from roomoperator.store.records import RunRecord, RunStatus, column_values
from roomoperator.store.repository import Store
from roomoperator.store.tables import ROOMS, RUNS, VERSIONS


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


@dataclass(frozen=True)
class _RunWrite:
    """One room's bookkeeping: a run started, or what a finished run concluded."""

    room_id: str
    fence: tuple[Write, ...]
    started: str | None = None
    desired: Desired | None = None
    status: StoredStatus | None = None
    run: RunOutcome | RunRecord | None = None


class RunBook:
    """The runs' bookkeeping writes of one store, group-committed (one write of a room per commit)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._commits: GroupCommit[_RunWrite, None] = GroupCommit(self._commit, key=lambda w: w.room_id)

    async def started(self, room_id: str, correlation_id: str) -> None:
        """The run row `correlation_id` of `room_id` is running now."""
        await self._submit(_RunWrite(room_id, self._store.writes_of([room_id]), started=correlation_id))

    async def finished(
        self,
        room_id: str,
        *,
        desired: Desired | None = None,
        status: StoredStatus | None = None,
        run: RunOutcome | RunRecord | None = None,
    ) -> None:
        """Record, in one transaction, what a run of `room_id` concluded: its revision became `desired`
        (the room's desired spec is then that revision's), the room's `status`, and the run
        (`RunOutcome`: an existing row finished; `RunRecord`: a new, finished row). Raises `KeyError`
        (nothing of it written) when the room has no revision `desired.revision`; adds the room's row
        when it has none."""
        fence = self._store.writes_of([room_id])
        await self._submit(_RunWrite(room_id, fence, desired=desired, status=status, run=run))

    async def _submit(self, write: _RunWrite) -> None:
        await self._store.fenced(self._commits.submit(write))

    async def _commit(self, writes: Sequence[_RunWrite]) -> list[Exception | None]:
        store = self._store
        async with store.writing(), store.sessions.begin() as session:
            refused = await store.refused(session, (fence for write in writes for fence in write.fence))
            connection = await session.connection()
            missing = await _missing_revisions(connection, writes)
            results: list[Exception | None] = []
            for write in writes:
                fenced = next((fence for fence in write.fence if fence in refused), None)
                if fenced is not None:
                    results.append(FencedError(write.room_id, refused[fenced]))
                elif write.desired is not None and (write.room_id, write.desired.revision) in missing:
                    results.append(KeyError(f"room {write.room_id} has no revision {write.desired.revision}"))
                else:
                    results.append(None)
            await _write(connection, [w for w, result in zip(writes, results, strict=True) if result is None])
        return results


async def _missing_revisions(
    connection: AsyncConnection, writes: Sequence[_RunWrite]
) -> set[tuple[str, int]]:
    """The (room, revision) pairs `writes` would make desired that the store does not have."""
    wanted = {(w.room_id, w.desired.revision) for w in writes if w.desired is not None}
    if not wanted:
        return set()
    pair = tuple_(VERSIONS.c.room_id, VERSIONS.c.revision)
    found = await connection.execute(select(VERSIONS.c.room_id, VERSIONS.c.revision).where(pair.in_(wanted)))
    return wanted - {(room_id, revision) for room_id, revision in found}


async def _write(connection: AsyncConnection, writes: Sequence[_RunWrite]) -> None:
    """The statements of `writes` (one room each), one of each kind for all of them."""
    now = utcnow()
    if started := [w.started for w in writes if w.started is not None]:
        await connection.execute(
            update(RUNS).where(RUNS.c.correlation_id.in_(started)).values(status="running")
        )
    if desired := [w for w in writes if w.desired is not None]:
        await connection.execute(
            _DESIRE,
            [{"d_room": w.room_id, "d_revision": w.desired.revision, "d_at": now, "d_diff": w.desired.diff}
             for w in desired if w.desired is not None],
        )  # fmt: skip
    rooms = [w for w in writes if w.desired is not None or w.status is not None]
    await _add_missing_rooms(connection, [w.room_id for w in rooms], now)
    for shape in {(w.desired is not None, w.status is not None) for w in rooms}:
        await connection.execute(
            _room_update(*shape),
            [_room_values(w, now) for w in rooms if (w.desired is not None, w.status is not None) == shape],
        )
    if added := [column_values(w.run) for w in writes if isinstance(w.run, RunRecord)]:
        await connection.execute(insert(RUNS), added)
    if ended := [w.run for w in writes if isinstance(w.run, RunOutcome)]:
        await connection.execute(
            _FINISH,
            [
                {"f_id": r.correlation_id, "f_status": r.status, "f_result": r.result, "f_at": now}
                for r in ended
            ],
        )


_DESIRE = (
    update(VERSIONS)
    .where(VERSIONS.c.room_id == bindparam("d_room"), VERSIONS.c.revision == bindparam("d_revision"))
    .values(desired_at=bindparam("d_at"), diff=bindparam("d_diff"))
)
_FINISH = (
    update(RUNS)
    .where(RUNS.c.correlation_id == bindparam("f_id"))
    .values(status=bindparam("f_status"), result=bindparam("f_result"), finished_at=bindparam("f_at"))
)


async def _add_missing_rooms(connection: AsyncConnection, room_ids: Sequence[str], now: dt.datetime) -> None:
    """Add the rows of the rooms that have none (unmanaged, never reconciled: the columns' defaults)."""
    if not room_ids:
        return
    found = await connection.execute(select(ROOMS.c.room_id).where(ROOMS.c.room_id.in_(room_ids)))
    if missing := set(room_ids) - set(found.scalars()):
        await connection.execute(insert(ROOMS), [{"room_id": r, "updated_at": now} for r in sorted(missing)])


@cache
def _room_update(desired: bool, status: bool) -> Update:
    """The `UPDATE` of a room's row for a finished run that made a revision `desired` and/or recorded
    its `status` (the spec copied from the revision's row inside the database)."""
    values: dict[str, Any] = {"updated_at": bindparam("r_at")}
    if desired:
        of_revision = (VERSIONS.c.room_id == bindparam("r_room")) & (
            VERSIONS.c.revision == bindparam("r_revision")
        )
        copied = {
            name: select(VERSIONS.c[name]).where(of_revision).scalar_subquery()
            for name in ("spec", "spec_version", "base_dir")
        }
        latest = ROOMS.c.latest_revision
        values |= copied | {
            "managed": True,
            "revision": bindparam("r_revision"),
            "confirmed": bindparam("r_confirmed"),
            "pending_revision": None,
            "latest_revision": case(
                (latest < bindparam("r_revision"), bindparam("r_revision")), else_=latest
            ),
        }
    if status:
        values |= {
            "conditions": bindparam("r_conditions"),
            "cycles_since_converged": bindparam("r_cycles"),
            "last_reconcile": bindparam("r_at"),
            "last_result": bindparam("r_result"),
            "pending_revision": bindparam("r_pending"),
        }
    return update(ROOMS).where(ROOMS.c.room_id == bindparam("r_room")).values(values)


def _room_values(write: _RunWrite, now: dt.datetime) -> dict[str, Any]:
    """The parameters of `_room_update` for `write`."""
    values: dict[str, Any] = {"r_room": write.room_id, "r_at": now}
    if (desired := write.desired) is not None:
        values |= {"r_revision": desired.revision, "r_confirmed": desired.confirmed}
    if (status := write.status) is not None:
        values |= {
            "r_conditions": status.conditions,
            "r_cycles": status.cycles_since_converged,
            "r_result": status.last_result,
            "r_pending": status.pending_revision,
        }
    return values
