"""Applying: the room-server calls that make each change, and for each the call that undoes it (ROLLBACK).

Every write goes through the rate limiter and the per-item retry policy. An undo restores what the room
had when the plan was made: a kicked entity is declared again with its old fields, a reseeded or deleted
artifact gets its previous version's bytes back (streamed through a temporary file), policies get their
old values. A promote cannot be undone (the server keeps no "unpromote"); it is reported as such.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.retrying import Retrier
from roomoperator.model.changes import Change, EntityBody, Fields, Op, PolicyValue, Provider, SeedContent
from roomoperator.model.observed import ObservedArtifact, ObservedRoom
from roomoperator.model.seeds import SeedLabels

T = TypeVar("T")
P = TypeVar("P")


def _payload(value: object, kind: type[P]) -> P:
    """A change's payload as the type its op carries (the planner's contract; anything else is a bug)."""
    if not isinstance(value, kind):
        raise TypeError(f"expected a {kind.__name__} payload, got {type(value).__name__}")
    return value


def _policy_value(value: object) -> PolicyValue:
    if not isinstance(value, str | int | bool):
        raise TypeError(f"expected a policy value, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Undo:
    """How to take one applied change back; `run` is None when it cannot be undone."""

    description: str
    run: Callable[[], Awaitable[None]] | None


@dataclass(frozen=True)
class Done:
    """A change that was made: how many calls it took and how to undo it."""

    attempts: int
    undo: Undo


class Applier:
    """Makes the changes of one plan against one room, as the room was observed when planning.

    Changes may be applied concurrently: each `apply` counts its own calls.
    """

    def __init__(
        self, client: RoomServerClient, observed: ObservedRoom, *, retrier: Retrier, limiter: RateLimiter
    ) -> None:
        self.client = client
        self.room_id = observed.room_id
        self.retrier = retrier
        self.limiter = limiter
        self._entities = {e.id: e for e in observed.entities}
        self._artifacts = {a.name: a for a in observed.artifacts}

    async def _write(self, call: Callable[[], Awaitable[T]], *, tally: list[int] | None = None) -> T:
        async def limited() -> T:
            await self.limiter.acquire()
            return await call()

        result = await self.retrier.call(limited)
        if tally is not None:
            tally.append(result.attempts)
        return result.value

    async def apply(self, change: Change) -> Done:
        """Make `change` (retried, rate-limited); raises RetryFailed when it could not be made."""
        tally: list[int] = []
        undo = await self._dispatch(change, tally)
        return Done(attempts=sum(tally), undo=undo)

    async def apply_policies(self, changes: Sequence[Change]) -> Done:
        """One `PUT /rooms/{roomId}/policies` with only the differing values."""
        tally: list[int] = []
        wanted = {c.name: _policy_value(c.after) for c in changes}
        await self._write(lambda: self.client.put_policies(self.room_id, wanted), tally=tally)
        previous = {c.name: _policy_value(c.before) for c in changes}

        async def restore() -> None:
            await self._write(lambda: self.client.put_policies(self.room_id, previous))

        return Done(sum(tally), Undo(f"restore policies {previous}", restore))

    async def _dispatch(self, change: Change, tally: list[int]) -> Undo:
        room, name, client = self.room_id, change.name, self.client
        if change.op is Op.JOIN:
            body = _payload(change.after, EntityBody).to_json()
            created = await self._write(lambda: client.put_entity(room, name, body), tally=tally)
            return self._undo_join(name, created)
        if change.op is Op.UPDATE:
            current = EntityBody.of(self._entities[name]).to_json()
            wanted = {**current, **_payload(change.after, Fields).values}
            await self._write(lambda: client.put_entity(room, name, wanted), tally=tally)
            return Undo(f"restore entity {name}", lambda: self._put_entity(name, current))
        if change.op is Op.KICK:
            old = EntityBody.of(self._entities[name]).to_json()
            await self._write(lambda: client.kick(room, name), tally=tally)
            return Undo(f"declare entity {name} again", lambda: self._put_entity(name, old))
        if change.op in (Op.SEED, Op.RESEED):
            return await self._seed(change, tally)
        if change.op is Op.PROMOTE:
            await self._write(lambda: client.promote_artifact(room, name), tally=tally)
            return Undo(f"promote of {name} cannot be undone", None)
        if change.op is Op.DELETE_ARTIFACT:
            await self._write(lambda: client.delete_artifact(room, name), tally=tally)
            previous = self._artifacts[name]
            return Undo(f"restore artifact {name} v{previous.version}", lambda: self._restore(previous))
        if change.op is Op.ENSURE_RESOURCE:
            provider = _payload(change.after, Provider).to_json()
            await self._write(lambda: client.mcp_load([provider]), tally=tally)
            return Undo(f"provider {name} stays loaded", None)
        raise ValueError(f"no single-change call for {change.op}")  # set-policy goes through apply_policies

    def _undo_join(self, entity_id: str, created: bool) -> Undo:
        if not created:
            return Undo(f"entity {entity_id} was already declared", None)

        async def kick() -> None:
            await self._write(lambda: self.client.kick(self.room_id, entity_id))

        return Undo(f"remove entity {entity_id}", kick)

    async def _put_entity(self, entity_id: str, body: dict[str, Any]) -> None:
        await self._write(lambda: self.client.put_entity(self.room_id, entity_id, body))

    async def _seed(self, change: Change, tally: list[int]) -> Undo:
        after, source = _payload(change.after, SeedContent), change.source
        if source is None:
            raise ValueError(f"{change.op} {change.name} has no seed file")
        labels = SeedLabels(change.name, after.type, after.workspace, after.tags)
        await self._upload(labels, fingerprint=after.fingerprint, source=source, tally=tally)
        previous = self._artifacts.get(change.name)
        if previous is None:

            async def delete() -> None:
                await self._write(lambda: self.client.delete_artifact(self.room_id, change.name))

            return Undo(f"delete artifact {change.name}", delete)
        return Undo(f"restore artifact {change.name} v{previous.version}", lambda: self._restore(previous))

    async def _restore(self, previous: ObservedArtifact) -> None:
        """Upload the bytes of `previous.version` again, with its metadata (a new version, same content)."""
        with tempfile.TemporaryDirectory(prefix="roomop-restore-") as folder:
            copy = Path(folder) / "artifact"
            await self._write(
                lambda: self.client.download_artifact(
                    self.room_id, previous.name, version=previous.version, target=copy
                )
            )
            labels = SeedLabels(previous.name, previous.type, previous.workspace, previous.tags)
            await self._upload(labels, fingerprint=previous.fingerprint, source=copy)

    async def _upload(
        self, labels: SeedLabels, *, fingerprint: str | None, source: Path, tally: list[int] | None = None
    ) -> None:
        await self._write(
            lambda: self.client.seed_artifact(
                self.room_id,
                name=labels.name,
                type_=labels.type,
                workspace=labels.workspace,
                tags=labels.tags,
                fingerprint=fingerprint,
                source=source,
            ),
            tally=tally,
        )
