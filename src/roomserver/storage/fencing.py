"""Fencing of operator writes (`roomcontract/fencing.py`): the highest lease epoch seen per room.

Each HTTP request runs in its own `request_scope()` (`api/fencing.py`, a middleware); when it carries
`X-RoomOp-Fence`, the `RoomId` dependency marks it `fence(room_id, epoch)`. `Database.run` then checks
each of the request's writes in the write's own savepoint: an epoch older than the room's highest is
refused with 409 `FENCED` and nothing of the write is kept; otherwise the epoch is recorded (it only
grows) and the write goes on. So a replica that lost its lease cannot write after the new owner has
written once, even when both race: the check and the write are one atomic step on the one writer
thread. Writes without the header are not fenced.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from roomcontract.fencing import FENCE_HEADER
from roomserver.errors import RoomServerError


@dataclass(frozen=True)
class Fence:
    """The writer's claim: its lease epoch for the room it writes to."""

    room_id: str
    epoch: int


@dataclass
class _Scope:
    """One request's fence, once its `RoomId` dependency has read the header."""

    fence: Fence | None = None


_current: ContextVar[_Scope | None] = ContextVar("roomserver_fence", default=None)


@contextlib.contextmanager
def request_scope() -> Iterator[None]:
    """The block serves one request: a fence it sets holds for its writes only (dependencies that run
    on worker threads see the same scope)."""
    token = _current.set(_Scope())
    try:
        yield
    finally:
        _current.reset(token)


def fence(room_id: str, epoch: int) -> None:
    """Fence the writes of the request being served (inside `request_scope`)."""
    scope = _current.get()
    if scope is None:
        raise RuntimeError("fence() outside a request scope: the fencing middleware is not installed")
    scope.fence = Fence(room_id, epoch)


def current() -> Fence | None:
    """The fence of the request being served (None: its writes are not fenced)."""
    scope = _current.get()
    return None if scope is None else scope.fence


def check(conn: sqlite3.Connection, fence: Fence) -> None:
    """Refuse a write older than the room's highest epoch, else record the epoch (inside the write)."""
    row = conn.execute("SELECT epoch FROM fences WHERE room_id = ?", (fence.room_id,)).fetchone()
    if row is not None and row[0] > fence.epoch:
        raise RoomServerError(
            409,
            f"{FENCE_HEADER} {fence.epoch} is older than {row[0]} already seen for room {fence.room_id}: "
            "another operator replica owns the room now",
            code="FENCED",
        )
    if row is None or row[0] < fence.epoch:
        conn.execute(
            "INSERT INTO fences (room_id, epoch) VALUES (?, ?) "
            "ON CONFLICT (room_id) DO UPDATE SET epoch = excluded.epoch",
            (fence.room_id, fence.epoch),
        )
