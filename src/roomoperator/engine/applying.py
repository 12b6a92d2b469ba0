"""Applying: the room-server calls that make each change, and for each the call that undoes it (ROLLBACK).

A change that is one room write (an entity upsert or removal, the policies, a promote, an artifact
delete) is a `Step`: its `Write` and how its result becomes an undo, so it can be sent alone or in a batch
request with the same meaning. Seeds (uploads) and resource loads are calls of their own. Every request
(a single write, a batch, an upload) goes through the rate limiter and the retry policy.

An undo restores what the room had when the plan was made: a kicked entity is declared again with its
old fields, a reseeded or deleted artifact gets its previous version's bytes back (streamed through a
temporary file), policies get their old values. A promote cannot be undone (the server keeps no
"unpromote"); it is reported as such.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.clients.writing import WriteResult
from roomoperator.engine.hashing import Fingerprint
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.retrying import Retrier
from roomoperator.model.changes import Change, EntityBody, Fields, Op, PolicyValue, Provider, SeedContent
from roomoperator.model.observed import ObservedArtifact, ObservedRoom
from roomoperator.model.seeds import SeedLabels
from roomoperator.model.writes import Write

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
    """How to take one applied change back; `run` is None when it cannot be undone. `write` is the one
    room write `run` makes, when it is one (ROLLBACK then sends such undos together, in order)."""

    description: str
    run: Callable[[], Awaitable[None]] | None
    write: Write | None = None


@dataclass(frozen=True)
class Done:
    """A change that was made: how many calls it took and how to undo it."""

    attempts: int
    undo: Undo
    detail: dict[str, object] = field(default_factory=dict)
    """What the call's answer adds to the change's audit entry (a seed's recorded fingerprint)."""


@dataclass(frozen=True)
class Step:
    """A change made by one room write (single or batched): the write, and the undo its result gives."""

    write: Write
    undo: Callable[[WriteResult], Undo]


class Applier:
    """Makes the changes of one plan against one room, as the room was observed when planning.

    Changes may be applied concurrently: each `apply` counts its own calls. A change that is one room
    write has a `step`; the executor sends steps one by one (`apply`) or several in one batch request
    (`apply_batch`), and both give each step's result the same meaning.
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
        step = self.step(change)
        if step is not None:
            return await self.apply_step(step)
        tally: list[int] = []
        if change.op in (Op.SEED, Op.RESEED):
            undo, recorded = await self._seed(change, tally)
            return Done(sum(tally), undo, {"hash": recorded})
        if change.op is Op.ENSURE_RESOURCE:
            provider = _payload(change.after, Provider).to_json()
            await self._write(lambda: self.client.mcp_load([provider], room_id=self.room_id), tally=tally)
            return Done(sum(tally), Undo(f"provider {change.name} stays loaded", None))
        raise ValueError(f"no call for {change.op}")  # set-policy goes through policies_step

    async def apply_step(self, step: Step) -> Done:
        """Make one step through its single endpoint (retried, rate-limited)."""
        tally: list[int] = []
        result = await self._write(lambda: self.client.write(self.room_id, step.write), tally=tally)
        return Done(sum(tally), step.undo(result))

    async def apply_batch(self, writes: Sequence[Write]) -> tuple[list[WriteResult], int]:
        """`writes` in one batch request (retried as a whole, one rate-limit token per request): each
        write's result, and the calls it took. Raises RetryFailed when the request itself failed."""
        tally: list[int] = []
        results = await self._write(lambda: self.client.batch(self.room_id, writes), tally=tally)
        return results, sum(tally)

    def step(self, change: Change) -> Step | None:
        """The one write that makes `change`; None for a change that is not one (a seed upload, a
        resource load)."""
        name = change.name
        if change.op is Op.JOIN:
            body = _payload(change.after, EntityBody).to_json()
            return Step(Write.put_entity(body), lambda result: self._undo_join(name, result.created))
        if change.op is Op.UPDATE:
            current = EntityBody.of(self._entities[name]).to_json()
            wanted = {**current, **_payload(change.after, Fields).values}
            return Step(Write.put_entity(wanted), lambda _: self._undo_put(f"restore entity {name}", current))
        if change.op is Op.KICK:
            old = EntityBody.of(self._entities[name]).to_json()
            return Step(
                Write.remove_entity(name), lambda _: self._undo_put(f"declare entity {name} again", old)
            )
        if change.op is Op.PROMOTE:
            return Step(
                Write.promote_artifact(name), lambda _: Undo(f"promote of {name} cannot be undone", None)
            )
        if change.op is Op.DELETE_ARTIFACT:
            previous = self._artifacts[name]
            return Step(
                Write.delete_artifact(name),
                lambda _: Undo(
                    f"restore artifact {name} v{previous.version}", lambda: self._restore(previous)
                ),
            )
        return None

    def policies_step(self, changes: Sequence[Change]) -> Step:
        """One `putPolicies` with only the differing values (every policy change of a plan)."""
        wanted = {c.name: _policy_value(c.after) for c in changes}
        previous = {c.name: _policy_value(c.before) for c in changes}
        restore = Write.put_policies(previous)
        return Step(
            Write.put_policies(wanted), lambda _: self._undo_with(f"restore policies {previous}", restore)
        )

    def _undo_with(self, description: str, write: Write) -> Undo:
        """An undo that is one room write."""

        async def run() -> None:
            await self._write(lambda: self.client.write(self.room_id, write))

        return Undo(description, run, write)

    def _undo_put(self, description: str, body: dict[str, Any]) -> Undo:
        return self._undo_with(description, Write.put_entity(body))

    def _undo_join(self, entity_id: str, created: bool) -> Undo:
        if not created:
            return Undo(f"entity {entity_id} was already declared", None)
        return self._undo_with(f"remove entity {entity_id}", Write.remove_entity(entity_id))

    async def _seed(self, change: Change, tally: list[int]) -> tuple[Undo, str]:
        """Upload a seed; its undo and the fingerprint recorded with it."""
        after, source = _payload(change.after, SeedContent), change.source
        if source is None:
            raise ValueError(f"{change.op} {change.name} has no seed file")
        labels = SeedLabels(change.name, after.type, after.workspace, after.tags)
        recorded = await self._upload(labels, fingerprint=after.fingerprint, source=source, tally=tally)
        previous = self._artifacts.get(change.name)
        if previous is None:
            undo = self._undo_with(f"delete artifact {change.name}", Write.delete_artifact(change.name))
        else:
            undo = Undo(
                f"restore artifact {change.name} v{previous.version}", lambda: self._restore(previous)
            )
        return undo, recorded

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
    ) -> str:
        """Upload `source`; returns the fingerprint recorded with it: `fingerprint`, or when None the
        reference fingerprint computed from the bytes as they are sent (afresh on each attempt)."""
        recorded: list[str] = []

        async def attempt() -> None:
            digest = Fingerprint(labels) if fingerprint is None else None
            await self.client.seed_artifact(
                self.room_id,
                name=labels.name,
                type_=labels.type,
                workspace=labels.workspace,
                tags=labels.tags,
                fingerprint=digest or fingerprint,
                source=source,
            )
            recorded.append(digest.hexdigest() if digest is not None else str(fingerprint))

        await self._write(attempt, tally=tally)
        return recorded[-1]
