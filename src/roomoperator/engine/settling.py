"""Settling the intents a crash left open: was each write it announced made? The room server's record says.

An intent is recorded before its write and settled with the write's audit entry once the call returned
(`engine/executing.py`); a `kill -9` in between leaves it open. Before a room's next run plans, the
engine settles the room's open intents here: one state read (its `revision` is the id of the room's last
event), then the room server's event log replayed from the oldest intent's `since` up to that revision
(`GET /events` with `Last-Event-ID`). A write was made when the log holds its event after `since`: an
`ENTITY.JOIN` of the entity for a join, an `ARTIFACT.ADDED`/`UPDATED` with the seed's SHA-256 for a seed,
and so on. A provider load has no event, and a log that cannot be read is replaced by the state: the
write was made when the room shows its effect. A made write gets the audit entry it would have had
(dated by its event, `settledFrom` saying how it was known); one not made gets none, and the run that
follows makes and audits it. When the room cannot be read, nothing is settled and the run stops before
writing (it would otherwise make a write an open intent may already have made, and audit it twice).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any, cast

from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.http import SseEvent
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.outcome import metadata_text
from roomoperator.model.audit import AuditEntry, Intent
from roomoperator.model.changes import Op
from roomoperator.model.observed import ObservedRoom

Event = dict[str, Any]
"""One room event's envelope (`docs/contract.md`: `id, roomId, ts, payload: {kind, data}`), with its
sequence number as an int in `seq`."""

_ENTITY_EVENTS = {Op.JOIN: "ENTITY.JOIN", Op.UPDATE: "ENTITY.UPDATED"}
_ARTIFACT_EVENTS = {
    Op.SEED: ("ARTIFACT.ADDED", "ARTIFACT.UPDATED"),
    Op.RESEED: ("ARTIFACT.ADDED", "ARTIFACT.UPDATED"),
    Op.PROMOTE: ("ARTIFACT.PROMOTED",),
    Op.DELETE_ARTIFACT: ("ARTIFACT.DELETED",),
}


@dataclass(frozen=True)
class Verdict:
    """What became of one open intent: the audit entry of its write, or None when it was not made."""

    intent: Intent
    entry: AuditEntry | None


def in_log(intent: Intent, event: Event) -> bool:
    """Is `event` the one the room server logged for `intent`'s write?"""
    payload = event.get("payload") or {}
    kind, data = payload.get("kind"), payload.get("data") or {}
    op, target, metadata = Op(intent.op), intent.target, intent.entry.metadata
    if op in _ENTITY_EVENTS:
        return kind == _ENTITY_EVENTS[op] and (data.get("entity") or {}).get("id") == target
    if op is Op.KICK:
        return kind == "ENTITY.LEAVE" and data.get("entityId") == target
    if op in _ARTIFACT_EVENTS:
        if kind not in _ARTIFACT_EVENTS[op] or data.get("name") != target:
            return False
        return op not in (Op.SEED, Op.RESEED) or data.get("sha256") == metadata.get("sha256")
    if op is Op.SET_POLICY:
        policies = data.get("policies") or {}
        return (
            kind == "POLICIES.UPDATED"
            and target in policies
            and (metadata_text(policies[target]) == metadata.get("value"))
        )
    return False


def in_state(intent: Intent, observed: ObservedRoom) -> bool:
    """Does the room show the effect of `intent`'s write? (An update's effect cannot be told apart.)"""
    op, target, metadata = Op(intent.op), intent.target, intent.entry.metadata
    entities = {e.id for e in observed.entities}
    artifacts = {a.name: a for a in observed.artifacts}
    if op is Op.JOIN:
        return target in entities
    if op is Op.KICK:
        return target not in entities
    if op in (Op.SEED, Op.RESEED):
        return target in artifacts and artifacts[target].sha256 == metadata.get("sha256")
    if op is Op.PROMOTE:
        return target in artifacts and artifacts[target].promoted
    if op is Op.DELETE_ARTIFACT:
        return target not in artifacts
    if op is Op.SET_POLICY:
        value = observed.policies.model_dump(by_alias=True).get(target)
        return metadata_text(value) == metadata.get("value")
    if op is Op.ENSURE_RESOURCE:
        return target in {r.name for r in observed.resources}
    return False


def _made(intent: Intent, *, when: dt.datetime | None, source: str) -> AuditEntry:
    entry = intent.entry
    return entry.model_copy(
        update={
            "timestamp": when or entry.timestamp,
            "metadata": {**entry.metadata, "settledFrom": source},
        }
    )


def _when(event: Event) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(str(event.get("ts")).replace("Z", "+00:00"))
    except ValueError:
        return None


def judge(intents: Sequence[Intent], observed: ObservedRoom, log: Sequence[Event] | None) -> list[Verdict]:
    """The verdict on each of one room's intents, from its event log since the oldest intent (None: the
    log could not be read) and its state."""
    verdicts = []
    for intent in intents:
        if log is None or intent.op == Op.ENSURE_RESOURCE:
            made = in_state(intent, observed)
            verdicts.append(Verdict(intent, _made(intent, when=None, source="state") if made else None))
            continue
        event = next((e for e in log if e["seq"] > intent.since and in_log(intent, e)), None)
        entry = None if event is None else _made(intent, when=_when(event), source="events")
        verdicts.append(Verdict(intent, entry))
    return verdicts


async def room_log(
    client: RoomServerClient,
    room_id: str,
    *,
    since: int,
    until: int,
    patience: float,
    with_actor: bool = False,
) -> list[Event] | None:
    """The room's events after `since` up to `until` (its revision), replayed from the room server's
    log (each naming its actor with `with_actor`, a server with `events.actor.v1`); None when the log
    cannot be read within `patience` seconds."""
    if until <= since:
        return []
    found: list[Event] = []
    try:
        async with asyncio.timeout(patience):
            replay = cast(
                "AsyncGenerator[SseEvent, None]",
                client.events(last_event_id=str(since), with_actor=with_actor, room_id=room_id),
            )
            async with contextlib.aclosing(replay) as events:
                async for event in events:
                    if event.event != "event" or not event.id:
                        continue
                    seq, envelope = int(event.id), json.loads(event.data)
                    if isinstance(envelope, dict) and envelope.get("roomId") == room_id:
                        found.append({**envelope, "seq": seq})
                    if seq >= until:
                        return found
    except (RoomServerError, TimeoutError, ValueError):
        return None
    return None  # the stream ended before reaching the room's revision


async def settle(
    client: RoomServerClient, observed: ObservedRoom, intents: Sequence[Intent], *, patience: float
) -> list[Verdict]:
    """The verdicts on the open intents of the room `observed` (just read); the log is given `patience`
    seconds to replay, else the state decides."""
    since = min(intent.since for intent in intents)
    log = await room_log(client, observed.room_id, since=since, until=observed.revision, patience=patience)
    return judge(intents, observed, log)
