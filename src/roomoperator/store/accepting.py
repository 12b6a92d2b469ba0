"""Accepting revisions, many rooms in one transaction: the compare-and-set of each room's latest
revision, its new `spec_versions` row and the run that will apply it (`Store.accept_revision` queues
each acceptance into a group commit, `store/committing.py`).

The rooms' latest revisions are read once (locked `FOR UPDATE` on PostgreSQL, so no other writer moves
them before the commit); each acceptance whose revision is not the next one is refused, the others are
written with one statement of each kind for all of them. A room another writer inserts meanwhile makes
the commit fail with `IntegrityError`: the store then accepts each item alone, as before batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from roomoperator.store.records import RunRecord, SpecVersion, column_values
from roomoperator.store.tables import ROOMS, RUNS, VERSIONS


@dataclass(frozen=True)
class Acceptance:
    """`version` as its room's next revision, with `run` (the run that will apply it)."""

    version: SpecVersion
    run: RunRecord | None = None


_MOVE = (
    update(ROOMS)
    .where(ROOMS.c.room_id == bindparam("moved_room"))
    .values(
        latest_revision=bindparam("moved_to"),
        updated_at=bindparam("moved_at"),
        # A source's first revision of a room claims it (`store/sources.py` releases it).
        source=func.coalesce(ROOMS.c.source, bindparam("claimed_by")),
    )
)


async def accept_all(
    connection: AsyncConnection, acceptances: Sequence[Acceptance], *, lock: bool
) -> list[bool]:
    """Write each acceptance whose revision is its room's next (one per room); whether each was.
    `lock`: read the rooms' rows `FOR UPDATE` (PostgreSQL)."""
    rooms = [acceptance.version.room_id for acceptance in acceptances]
    query = select(ROOMS.c.room_id, ROOMS.c.latest_revision).where(ROOMS.c.room_id.in_(rooms))
    rows = await connection.execute(query.with_for_update() if lock else query)
    latest: dict[str, int] = dict(rows.all())
    accepted: list[bool] = []
    moved: list[dict[str, Any]] = []
    added: list[dict[str, Any]] = []
    for acceptance in acceptances:
        version = acceptance.version
        current = latest.get(version.room_id)
        accepted.append((current if current is not None else 0) == version.revision - 1)
        if not accepted[-1]:
            continue
        if current is None:
            added.append(
                {
                    "room_id": version.room_id,
                    "managed": False,
                    "revision": 0,
                    "latest_revision": version.revision,
                    "conditions": [],
                    "cycles_since_converged": 0,
                    "updated_at": version.applied_at,
                    "source": version.source,
                }
            )
        else:
            moved.append(
                {
                    "moved_room": version.room_id,
                    "moved_to": version.revision,
                    "moved_at": version.applied_at,
                    "claimed_by": version.source,
                }
            )
    taken = [acceptance for acceptance, ok in zip(acceptances, accepted, strict=True) if ok]
    if moved:
        await connection.execute(_MOVE, moved)
    if added:  # a room inserted by another writer meanwhile raises IntegrityError: not ours to take
        await connection.execute(insert(ROOMS), added)
    if taken:
        await connection.execute(insert(VERSIONS), [column_values(a.version) for a in taken])
    if runs := [column_values(a.run) for a in taken if a.run is not None]:
        await connection.execute(insert(RUNS), runs)
    return accepted
