"""The store's GitOps part: each source's state (fetched, attempted and applied revisions, errors, the
rooms it declares), the release of a room a source stops declaring, and the seed folders under a git
source's exports that the store still refers to (so the source keeps those exports). A room is claimed
by a source in the acceptance's own transaction (`Store.accept_revision`), never here."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import select, union, update

from roomoperator.model.audit import utcnow
from roomoperator.store.repository import Store, record_of
from roomoperator.store.tables import RoomRow, RunRow, SourceRow, SpecVersionRow

UNFINISHED_RUNS = ("queued", "running")
LIKE_ESCAPE = "\\"


@dataclass(frozen=True)
class SourceState:
    """What a source last did: `fetched_revision` (the newest revision read), `attempted_revision` (the
    newest one offered to the acceptance), `applied_revision` (the newest one whose every spec was
    accepted), the errors of the last attempt (empty: none) and the rooms it declares."""

    name: str
    kind: str
    location: str
    updated_at: dt.datetime
    fetched_revision: str | None = None
    fetched_at: dt.datetime | None = None
    attempted_revision: str | None = None
    applied_revision: str | None = None
    applied_at: dt.datetime | None = None
    errors: list[dict[str, Any]] = field(default_factory=list)
    rooms: dict[str, str] = field(default_factory=dict)
    """Room id -> the file that declares it (relative to the source's folder)."""


async def save_source(store: Store, state: SourceState) -> None:
    """Insert or replace the state of one source."""
    async with store.writing(), store.sessions.begin() as session:
        row = await session.get(SourceRow, state.name)
        if row is None:
            session.add(SourceRow(**asdict(state)))
            return
        for name, value in asdict(state).items():
            setattr(row, name, value)


async def load_sources(store: Store) -> dict[str, SourceState]:
    """Every source's stored state, by name."""
    async with store.sessions() as session:
        rows = (await session.scalars(select(SourceRow).order_by(SourceRow.name))).all()
    return {row.name: record_of(SourceState, row) for row in rows}


async def release_room(store: Store, room_id: str, *, source: str) -> bool:
    """`source` no longer owns `room_id` (False: it did not own it)."""
    async with store.writing(), store.sessions.begin() as session:
        result = await session.execute(
            update(RoomRow)
            .where(RoomRow.room_id == room_id, RoomRow.source == source)
            .values(source=None, updated_at=utcnow())
        )
        return bool(getattr(result, "rowcount", 0))


async def seed_folders_under(store: Store, prefix: str) -> set[str]:
    """The seed folders (`base_dir`) starting with `prefix` that the store still refers to: every room
    revision's (a restore reads its seeds there), each room's desired one and each unfinished run's (an
    unchanged spec taken again may bring a folder no revision records). One query, a `LIKE` prefix match
    on each table."""
    pattern = _like_escaped(prefix) + "%"
    query = union(
        select(SpecVersionRow.base_dir).where(SpecVersionRow.base_dir.like(pattern, escape=LIKE_ESCAPE)),
        select(RoomRow.base_dir).where(RoomRow.base_dir.like(pattern, escape=LIKE_ESCAPE)),
        select(RunRow.base_dir).where(
            RunRow.status.in_(UNFINISHED_RUNS), RunRow.base_dir.like(pattern, escape=LIKE_ESCAPE)
        ),
    )
    async with store.sessions() as session:
        folders = (await session.execute(query)).scalars().all()
    # SQLite's LIKE ignores ASCII case: the exact prefix is checked here
    return {folder for folder in folders if folder is not None and folder.startswith(prefix)}


def _like_escaped(text: str) -> str:
    """`text` matched literally by `LIKE ... ESCAPE LIKE_ESCAPE`."""
    for special in (LIKE_ESCAPE, "%", "_"):
        text = text.replace(special, LIKE_ESCAPE + special)
    return text
