"""Operator replicas on one PostgreSQL store: which rooms this replica owns (`docs/operator.md`, "Running
replicas").

Every `retrySeconds` the replica heartbeats, renews all its leases in one statement, takes the free or
expired leases of the rooms that hash to it, and hands back (between their runs) the rooms that now hash
to another live replica. Rooms are spread by rendezvous (highest-random-weight) hashing over the live
replicas (heartbeat within the lease time), so a replica joining or leaving moves only its share, and a
dead replica's rooms go to the next replica in each room's order once its leases expire. The lease
statements and the fencing state are `store/leases.py`; what owning a room means to the controller
(loading it, resuming its runs, stopping them) is the `RoomOwner` it implements.

A replica that cannot renew within `renewDeadlineSeconds` stops every run of its rooms before its leases
can expire (`leaseSeconds` later) and reports degraded on `/health`; every store write of a room and every
room-server write carries the epoch it holds, so a replica paused past its lease is refused (fencing).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Sequence
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError

from roomoperator.model.audit import AuditEntry, AuditSink
from roomoperator.service.health import HealthMonitor
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.settings import ReplicaSettings
from roomoperator.store import RunRecord, Store
from roomoperator.store.leases import Census, Fencing, LeaseBook

log = structlog.get_logger(__name__)


def weight(replica_id: str, room_id: str) -> int:
    """The rendezvous weight of `room_id` on `replica_id` (64 bits of BLAKE2b: stable across processes)."""
    digest = hashlib.blake2b(f"{replica_id}\0{room_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def preferred(room_id: str, replicas: Sequence[str]) -> str | None:
    """The replica that should own `room_id`: the highest weight among `replicas` (None: no replica)."""
    return max(replicas, key=lambda replica: weight(replica, room_id), default=None)


class RoomOwner(Protocol):
    """What owning a room means to the service (`service/controller.py` implements it)."""

    async def take_rooms(self, room_ids: Sequence[str]) -> None:
        """The replica took these rooms: load them from the store, resume their runs, schedule them."""

    def drop_room(self, room_id: str) -> None:
        """The replica lost (or hands back) the room: stop its runs now."""

    def room_idle(self, room_id: str) -> bool:
        """No run of the room is in flight or pending (it may be handed back now)."""

    async def pick_up(self, runs: Sequence[RunRecord]) -> None:
        """Unfinished runs of owned rooms, oldest first: run the ones this replica does not know yet."""

    async def announced(self, room_ids: Sequence[str]) -> None:
        """Another replica announced these owned rooms (a run accepted, the room unmanaged there)."""

    async def refresh_rooms(self, room_ids: Sequence[str]) -> None:
        """Rooms owned elsewhere changed in the store: reload their views (`/status` on every replica)."""


class Replicas:
    """This replica's share of the rooms, kept by `run()` every `retrySeconds`."""

    def __init__(
        self,
        settings: ReplicaSettings,
        store: Store,
        *,
        metrics: OperatorMetrics,
        health: HealthMonitor,
        audit: AuditSink,
        operator_version: str,
        url: str | None = None,
    ) -> None:
        self.settings = settings
        self.replica_id = settings.replica_id
        self.fencing = Fencing(settings.replica_id)
        self.book = LeaseBook(
            store, replica_id=self.replica_id, lease_seconds=settings.lease_seconds, url=url
        )
        self._store = store
        self._metrics = metrics
        self._health = health
        health.replica = self.replica_id
        self._audit = audit
        self._version = operator_version
        self._owner: RoomOwner | None = None
        self._live: tuple[str, ...] = (self.replica_id,)
        self._seen_since: dict[str, float] = {}
        """Per live replica: since when (monotonic) it has been live at every census in a row."""
        self._holders: dict[str, str] = {}
        """Room id -> the replica holding its live lease at the last census (every room, `/status`)."""
        self._updated: dict[str, object] | None = None
        """Room id -> when its row last changed, at the last census (None: no census yet)."""
        self._renewed_at = time.monotonic()
        self._stopped_runs = False
        self._wake = asyncio.Event()
        self._listened = False  # listened once: a later listen is a reconnect
        self._announced_rooms: set[str] = set()
        """Rooms whose runs another replica announced since the last pick-up."""
        self.fencing.on_refused.append(self._refused)

    def attach(self, owner: RoomOwner) -> None:
        self._owner = owner

    # Views ---------------------------------------------------------------------------------------------

    def owns(self, room_id: str) -> bool:
        return room_id in self.fencing.held

    def owner_of(self, room_id: str) -> str | None:
        """The replica owning `room_id` (as of this replica's last look at the store)."""
        return self.replica_id if self.owns(room_id) else self._holders.get(room_id)

    @property
    def owned(self) -> int:
        return len(self.fencing.held)

    async def announce(self, room_id: str) -> None:
        """A run of `room_id` was accepted here for its owner elsewhere: tell the replicas now."""
        try:
            await self.book.notify(room_id)
        except (OSError, SQLAlchemyError) as exc:  # the owner's next period finds the run anyway
            log.warning("could not announce a run", room_id=room_id, error=str(exc))

    def _announced(self, room_id: str) -> None:
        """Another replica accepted a run of `room_id`: pick it up now if the room is ours (or should be)."""
        if self.owns(room_id) or preferred(room_id, self._live) == self.replica_id:
            self._announced_rooms.add(room_id)
            self._wake.set()

    # Claims --------------------------------------------------------------------------------------------

    async def claim(self, room_id: str) -> bool:
        """Own `room_id` now if it hashes to this replica and its lease is free (an apply of a new room
        here); True when this replica owns it."""
        if self.owns(room_id):
            return True
        if preferred(room_id, self._live) != self.replica_id or self._capped():
            return False
        try:
            taken = await self.book.acquire([room_id])
        except (OSError, SQLAlchemyError):
            return False
        self.fencing.held.update(taken)
        self._metrics.rooms_owned.set(self.owned)
        return room_id in taken

    def _capped(self) -> bool:
        cap = self.settings.max_rooms
        return cap is not None and self.owned >= cap

    # The period ----------------------------------------------------------------------------------------

    async def start(self) -> None:
        """The first period, before the controller starts: this replica's share taken at once; then the
        other replicas' announcements are heard."""
        if await self.renew():
            await self.balance()

    async def _listen(self) -> None:
        """Listen for the other replicas' announced runs (again, when the connection was lost: the
        announcements made meanwhile are found by the next period's poll)."""
        try:
            await self.book.listen(self._announced)
        except (OSError, SQLAlchemyError) as exc:
            log.warning("cannot listen for announced runs; the period's poll finds them", error=str(exc))
            return
        if self._listened:
            log.info("listening again for announced runs", replica=self.replica_id)
        self._listened = True

    async def run(self) -> None:
        """Renew every `retrySeconds`, and balance as often, forever, in two loops (a slow balance never
        delays a renewal); the balancing loop also picks up announced runs as they come."""
        await asyncio.gather(self._renewing(), self._balancing())

    async def _renewing(self) -> None:
        while True:
            await asyncio.sleep(self.settings.retry_seconds)
            try:
                await self.renew()
            except Exception:  # a bug here must not stop the next renewals
                log.exception("lease renewal failed", replica=self.replica_id)

    async def _balancing(self) -> None:
        due = time.monotonic() + self.settings.retry_seconds
        while True:
            self._wake.clear()
            try:
                async with asyncio.timeout(max(0.0, due - time.monotonic())):
                    await self._wake.wait()
            except TimeoutError:
                pass
            if self._stopped_runs:
                due = time.monotonic() + self.settings.retry_seconds
                continue  # cannot renew: take nothing
            try:
                if time.monotonic() < due:
                    await self._pick_up_announced()
                    continue
                due = time.monotonic() + self.settings.retry_seconds
                self._announced_rooms.clear()  # the balance picks up every run
                await self.balance()
            except (OSError, SQLAlchemyError) as exc:
                log.warning("cannot read the leases", replica=self.replica_id, error=str(exc))
            except Exception:  # a bug here must not stop the renewals of the next period
                log.exception("replica balance failed", replica=self.replica_id)

    async def stop(self) -> None:
        """A clean stop: every lease handed back at once, so the other replicas take over now."""
        for room_id in list(self.fencing.held):
            self._drop(room_id)
        try:
            await self.book.leave()
        except (OSError, SQLAlchemyError):
            log.warning("could not hand the leases back; they expire by themselves", replica=self.replica_id)
        await self.book.close()

    async def renew(self) -> bool:
        """Heartbeat and renew every lease held (one statement each); drop the rooms whose lease was lost.
        False when the store did not answer (past the renew deadline every run stops)."""
        asked = dict(self.fencing.held)
        try:
            await self.book.heartbeat()
            renewed = await self.book.renew(asked)
        except (OSError, SQLAlchemyError) as exc:
            self._cannot_renew(exc)
            return False
        self._renewed_at, self._stopped_runs = time.monotonic(), False
        self._health.leases_ok = True
        self._metrics.lease_renewals.inc(len(renewed))
        for room_id in [room for room, epoch in asked.items() if room not in renewed]:
            if self.fencing.held.get(room_id) != asked[room_id]:
                continue  # dropped, or taken again, while the renewal ran
            log.warning("lease lost", room_id=room_id, replica=self.replica_id)
            self._metrics.leases_lost.inc()
            self._drop(room_id)
        self._metrics.rooms_owned.set(self.owned)
        if not self.book.listening:
            await self._listen()
        return True

    async def balance(self) -> None:
        """Take the rooms that hash here, hand back the others, pick up accepted runs, refresh the views
        of other replicas' rooms."""
        census = await self.book.census()
        self._live = tuple(sorted({*census.replicas, self.replica_id}))
        self._health.live_replicas = len(self._live)
        now = time.monotonic()
        self._seen_since = {replica: self._seen_since.get(replica, now) for replica in self._live}
        taken = await self._take(census)
        await self._hand_back(census)
        self._holders = {room: lease.holder for room, lease in census.leases.items() if lease and lease.live}
        self._metrics.rooms_owned.set(self.owned)
        assert self._owner is not None
        if taken:
            await self._audited("lease.taken", taken, census)
            await self._owner.take_rooms(sorted(taken))
        if self.fencing.held:  # unfinished runs are few (an index on status): filtered here, not in SQL
            runs = await self._store.unfinished_runs()
            await self._owner.pick_up([run for run in runs if self.owns(run.room_id)])
        # The first census only sets the baseline: the controller loaded every view at its start.
        changed = [
            room
            for room, updated in census.updated.items()
            if self._updated is not None and not self.owns(room) and self._updated.get(room) != updated
        ]
        self._updated = dict(census.updated)
        if changed:
            await self._owner.refresh_rooms(changed)

    async def _pick_up_announced(self) -> None:
        """The runs other replicas announced for rooms owned here (taken now when free and preferred)."""
        rooms, self._announced_rooms = sorted(self._announced_rooms), set()
        assert self._owner is not None
        claimed = [room for room in rooms if not self.owns(room) and await self.claim(room)]
        if claimed:
            await self._owner.take_rooms(claimed)
        owned = [room for room in rooms if self.owns(room) and room not in claimed]
        if owned:
            await self._owner.announced(owned)

    async def _take(self, census: Census) -> dict[str, int]:
        """Take the free or expired leases of the rooms that hash to this replica (up to `maxRooms`)."""
        wanted = [
            room
            for room, lease in census.leases.items()
            if not self.owns(room)
            and (lease is None or not lease.live)
            and preferred(room, self._live) == self.replica_id
        ]
        if (cap := self.settings.max_rooms) is not None:
            wanted = sorted(wanted)[: max(0, cap - self.owned)]
        if not wanted:
            return {}
        taken = await self.book.acquire(wanted)
        self.fencing.held.update(taken)
        over = [
            room for room in taken if (lease := census.leases.get(room)) and lease.holder != self.replica_id
        ]
        self._metrics.takeovers.inc(len(over))
        if taken:
            first = {room: taken[room] for room in sorted(taken)[:3]}
            log.info(
                "rooms taken", rooms=len(taken), taken_over=len(over), replica=self.replica_id, first=first
            )
        return taken

    async def _hand_back(self, census: Census) -> None:
        """Hand back, between their runs, the rooms that now hash to another replica live for two lease
        times in a row (a replica back from a pause, or flapping, gets no rooms back at once)."""
        assert self._owner is not None
        settled_after = time.monotonic() - 2 * self.settings.lease_seconds
        settled = [
            r for r, since in self._seen_since.items() if since <= settled_after or r == self.replica_id
        ]
        leaving = [
            room
            for room in self.fencing.held
            if preferred(room, settled) != self.replica_id and self._owner.room_idle(room)
        ]
        for room_id in leaving:
            self._drop(room_id)
        if leaving:
            await self.book.release(leaving)
            await self._audited("lease.handed_back", dict.fromkeys(leaving, 0), census)
            self._metrics.handbacks.inc(len(leaving))
            log.info("rooms handed back", rooms=len(leaving), replica=self.replica_id)

    async def _audited(self, action: str, rooms: dict[str, int], census: Census) -> None:
        """One audit entry per room taken (with its new epoch and the replica it came from) or handed back
        (with the replica it should go to), in the journal's group commits."""
        correlation_id = str(uuid.uuid4())

        def entry(room_id: str, epoch: int) -> AuditEntry:
            lease = census.leases.get(room_id)
            metadata = {"replica": self.replica_id}
            if action == "lease.taken":
                metadata |= {"epoch": str(epoch), "from": lease.holder if lease is not None else ""}
            else:
                metadata["to"] = preferred(room_id, self._live) or ""
            return AuditEntry(
                action=action,
                correlation_id=correlation_id,
                operator_version=self._version,
                spec_version=0,
                room_id=room_id,
                actor=f"replica:{self.replica_id}",
                metadata=metadata,
            )

        try:
            await asyncio.gather(*(self._audit.record(entry(room, epoch)) for room, epoch in rooms.items()))
        except (OSError, SQLAlchemyError) as exc:
            log.warning("could not audit lease changes", action=action, error=str(exc))

    def _cannot_renew(self, exc: BaseException) -> None:
        """The store did not answer: past the renew deadline every run of this replica's rooms stops (the
        leases expire `leaseSeconds` after the last renewal, later than this)."""
        late = time.monotonic() - self._renewed_at
        log.warning("cannot renew leases", replica=self.replica_id, seconds=round(late, 1), error=str(exc))
        if late >= self.settings.renew_deadline_seconds and not self._stopped_runs:
            self._health.leases_ok = False
            self._stopped_runs = True
            for room_id in list(self.fencing.held):
                self._drop(room_id)
            self._metrics.rooms_owned.set(0)

    def _drop(self, room_id: str) -> None:
        self.fencing.held.pop(room_id, None)
        if self._owner is not None:
            self._owner.drop_room(room_id)

    def _refused(self, room_id: str, reason: str, lost: bool) -> None:
        """A write of `room_id` was refused by fencing (store or room server): drop the room here (unless
        only a leftover run of an older lease was refused)."""
        self._metrics.fenced_writes.inc()
        log.warning("write refused by fencing", room_id=room_id, replica=self.replica_id, reason=reason)
        if lost and self._owner is not None:
            # Not from inside the refused write's own call stack: the run may be the one to cancel.
            asyncio.get_running_loop().call_soon(self._owner.drop_room, room_id)
