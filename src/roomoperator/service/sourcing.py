"""The service's side of the GitOps sources (`sources/`): `SourceSink` takes each room a source declares
through the controller's one acceptance path (attributed to the source and its revision, a commit), lets
unchanged specs pass without a run, keeps an override its owner allows until the source changes the
room (shown as drift from the source, `overridden`), stops managing a room the source no longer
declares (with `prune`, first removing what the operator made in it, under the guardrails: in an open
room, the declared entities the operator joined itself, `engine/releasing.py`) and reports
failed syncs as a typed event for the observers (audit, log, notifications)."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Sequence

from roomoperator.service.acceptance import Acceptor, Offer, Refused
from roomoperator.service.observing import RunEvent, SourceSyncFailed
from roomoperator.service.rooms import RoomRegistry, RoomView
from roomoperator.service.runs import Submission, new_id
from roomoperator.settings import SourceSettings
from roomoperator.sources.scanning import Declared
from roomoperator.spec.models import RoomSpec
from roomoperator.store import Store
from roomoperator.store.sources import release_room


def actor_of(source: str) -> str:
    """The actor a source's revisions and runs are recorded under."""
    return f"source:{source}"


def pruned(spec: RoomSpec) -> RoomSpec:
    """`spec` declaring nothing, under its own membership rule: planning it removes the artifacts the
    operator wrote (the planner's inventory rule, never a member's) and the resources it declared, and,
    in a `closed` room (the spec is the roster), its entities. In an `open` room only the entities the run
    is told to release (`released(spec)`) can go, and of those only the ones whose latest join the
    operator's own token made (the room's event log says, `engine/releasing.py`); members' entities stay,
    and so do all of them when the room server cannot name its events' actors."""
    body = spec.spec.model_copy(update={"entities": (), "artifacts": (), "resources": ()})
    return spec.model_copy(update={"spec": body})


def released(spec: RoomSpec) -> frozenset[str]:
    """The entities a prune of `spec`'s room may remove beyond `pruned(spec)`'s plan: in an `open` room,
    the ones `spec` declared (the run keeps those the operator joined itself); none in a `closed` one."""
    if spec.spec.membership != "open":
        return frozenset()
    return frozenset(entity.id for entity in spec.spec.entities)


class SourceSink:
    """The `sources.syncing.Sink` the controller gives its sources."""

    def __init__(
        self,
        *,
        sources: Sequence[SourceSettings],
        acceptor: Acceptor,
        rooms: RoomRegistry,
        store: Store,
        take: Callable[[Offer], Awaitable[Submission]],
        unmanage: Callable[[str, str], Awaitable[bool]],
        publish: Callable[[RunEvent], Awaitable[None]],
    ) -> None:
        self._confirm = {source.name: source.confirm for source in sources}
        """Source name -> whether its specs count as confirmed; every configured source is a key."""
        self._acceptor = acceptor
        self._rooms = rooms
        self._store = store
        self._take = take
        self._unmanage = unmanage
        self._publish = publish
        self._overridden: set[str] = set()

    async def adopt(self, room_id: str, source: str | None) -> None:
        """At start: the store says `source` owns `room_id`; a source no longer configured lets it go."""
        if source is not None and source not in self._confirm:
            await release_room(self._store, room_id, source=source)
            source = None
        self._acceptor.own(room_id, source)

    async def declare(self, declared: Declared, *, source: str, revision: str) -> str | None:
        """Offer the room's spec; the refusal's message, or None (taken, or unchanged: no run)."""
        room_id = declared.spec.room_id
        try:
            offer = await self._acceptor.offer(
                declared.spec,
                base_dir=declared.base_dir,
                confirm=self._confirm.get(source, False),
                actor=actor_of(source),
                force=True,  # the source's history is the order: a revert or a force-push is applied too
                source=source,
                source_revision=revision,
            )
            view = self._rooms.get(room_id) or RoomView(room_id=room_id)
            verdict = await self._acceptor.accept(view, offer, correlation_id="", dry_run=True)
            if verdict.unchanged and view.managed:
                self._overridden.discard(room_id)
                return None
            if await self._still_overridden(view, offer):
                self._overridden.add(room_id)
                return None
            self._overridden.discard(room_id)
            await self._take(offer)
        except Refused as refused:
            return f"{declared.file}: {'; '.join(refused.errors)}"
        return None

    async def _still_overridden(self, view: RoomView, offer: Offer) -> bool:
        """The room's latest revision came from elsewhere (an override its owner allows) and the source
        still declares what it last did: the override stays, shown as drift from the source."""
        latest = view.latest
        if latest is None or latest.source == offer.source or not view.managed:
            return False
        mine = [
            version for version in await self._store.history(view.room_id) if version.source == offer.source
        ]
        return bool(mine) and mine[-1].digest == offer.content.digest

    def overridden(self, source: str) -> list[str]:
        """The rooms of `source` whose latest revision is an override from elsewhere."""
        return sorted(
            room
            for room in self._overridden
            if (owner := self._acceptor.owner(room)) and owner.source == source
        )

    async def release(self, room_id: str, *, source: str, prune: bool) -> None:
        """Stop managing a room `source` owns and no longer declares (nothing when it does not own it)."""
        owner = self._acceptor.owner(room_id)
        if owner is None or owner.source != source:
            return
        view = self._rooms.managed(room_id)
        if prune and view is not None and view.spec is not None:
            offer = await self._acceptor.offer(
                pruned(view.spec),
                base_dir=view.base_dir,
                confirm=False,
                actor=actor_of(source),
                force=True,
                source=source,
            )
            submission = await self._take(dataclasses.replace(offer, release=released(view.spec)))
            await submission.request.done
        await self._unmanage(room_id, actor_of(source))
        await release_room(self._store, room_id, source=source)
        self._acceptor.own(room_id, None)
        self._overridden.discard(room_id)

    async def failed(self, source: str, errors: list[str]) -> None:
        await self._publish(SourceSyncFailed(source, tuple(errors), new_id()))
