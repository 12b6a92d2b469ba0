"""Who a write is by: the actor the `events` table keeps with each event it appends.

Each HTTP request runs in its own `request_scope()` (`api/scoping.py`); its dependencies name the caller
(`RequireScope`: the token's name; `Member`: the entity of `X-Entity-Id`, which wins), and the hub runs
each session's writes `acting(entity id)`. `Database.run` takes the actor of the caller's context with the
write and runs the write `acting` it on the writer thread, where `repository` stores `current()` with
every event the write appends. A write outside both (start-up, the server's own housekeeping) has none.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class _Scope:
    """One request's (or block's) caller, filled in by the dependencies that authenticate it."""

    principal: str | None = None
    member: str | None = None

    @property
    def actor(self) -> str | None:
        return self.member or self.principal


_current: ContextVar[_Scope | None] = ContextVar("roomserver_actor", default=None)


@contextlib.contextmanager
def request_scope() -> Iterator[None]:
    """The block serves one request: the caller its dependencies name acts for its writes only
    (dependencies that run on worker threads see the same scope)."""
    token = _current.set(_Scope())
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def acting(actor: str | None) -> Iterator[None]:
    """The writes of the block are by `actor` (a hub session's entity; a write on the writer thread)."""
    token = _current.set(_Scope(principal=actor))
    try:
        yield
    finally:
        _current.reset(token)


def authenticated(principal: str) -> None:
    """The request being served is by the token named `principal` (no-op outside a request scope)."""
    scope = _current.get()
    if scope is not None:
        scope.principal = principal


def member(entity_id: str) -> None:
    """The request being served acts as the declared member `entity_id` (`X-Entity-Id`)."""
    scope = _current.get()
    if scope is not None:
        scope.member = entity_id


def current() -> str | None:
    """The actor of the write being made (None: not known)."""
    scope = _current.get()
    return None if scope is None else scope.actor
