"""Every read and write of room data, each one a function of a connection, atomic (`transaction`: a
savepoint within the group commit's transaction, `storage/database.py`); reads are marked `read_only`.

Each change appends its events to the `events` table in the same transaction, so the event log and the
data never disagree, and `GET /events` can replay exactly what happened (and, asked, who did: each event
keeps the actor of its write, `actors.py`).

Longer than most modules on purpose: every SQL statement of the room server is here (but the schema and
the group commit's report of changed rooms, in `database.py`), so what one transaction reads and writes,
and which events it appends, can be checked in one file.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from dataclasses import dataclass
from typing import Any, Literal, cast

from roomserver.domain import events as ev
from roomserver.domain.artifacts import ArtifactDraft, Manifest
from roomserver.domain.changes import (
    Change,
    DeleteArtifact,
    PromoteArtifact,
    PutEntity,
    PutManager,
    PutPolicies,
    RemoveEntity,
)
from roomserver.domain.entities import Entity
from roomserver.domain.events import PendingEvent, RoomEvent
from roomserver.domain.policies import RoomPolicies
from roomserver.domain.rooms import UNDECLARED, RoomStatus, status_after_join, status_after_leave
from roomserver.domain.timestamps import now_iso
from roomserver.errors import RoomServerError, artifact_error
from roomserver.storage import actors
from roomserver.storage.database import read_only, transaction

ROOM_WORKSPACE = ""  # `owner` column value of the room workspace (entity workspaces store the entity id)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


@dataclass(frozen=True)
class RoomSnapshot:
    """The stored part of a room's state, entities and artifacts as ready JSON text (the state read is hot:
    rows are never turned into Python objects). Presence and resources are added by the caller."""

    room_id: str
    status: RoomStatus
    revision: int
    entities: list[tuple[str, str]]  # (entity id, wire JSON without `connected`), sorted by id
    artifacts: list[str]  # state entries as JSON objects, sorted by name
    policies: RoomPolicies
    manager: str | None = None  # the manager as JSON text (`set_manager`), None when no operator manages it


@dataclass(frozen=True)
class Written:
    """Result of a write: the manifest, whether it changed anything, and the events it produced."""

    manifest: Manifest
    changed: bool
    events: list[RoomEvent]


# --- rooms and events -------------------------------------------------------------------------------------


def _room_row(conn: sqlite3.Connection, room_id: str) -> tuple[RoomStatus, RoomPolicies] | None:
    row = conn.execute("SELECT status, policies FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
    if row is None:
        return None
    policies = json.loads(row[1])
    return cast(RoomStatus, row[0]), RoomPolicies(
        dm_visibility_default=policies["dmVisibilityDefault"],
        allow_resource_creation=policies["allowResourceCreation"],
        max_artifacts_per_entity=policies["maxArtifactsPerEntity"],
    )


def _ensure_room(conn: sqlite3.Connection, room_id: str, now: str) -> tuple[RoomStatus, RoomPolicies]:
    conn.execute(
        "INSERT OR IGNORE INTO rooms (room_id, status, policies, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (room_id, UNDECLARED, _dumps(RoomPolicies().to_wire()), now, now),
    )
    found = _room_row(conn, room_id)
    assert found is not None
    return found


def _set_status(conn: sqlite3.Connection, room_id: str, status: RoomStatus, now: str) -> None:
    conn.execute("UPDATE rooms SET status = ?, updated_at = ? WHERE room_id = ?", (status, now, room_id))


def _emit(conn: sqlite3.Connection, room_id: str, now: str, pending: list[PendingEvent]) -> list[RoomEvent]:
    """Append `pending` to the log, each with the actor of the write being made (`actors.py`)."""
    actor = actors.current()
    stored = []
    for event in pending:
        cursor = conn.execute(
            "INSERT INTO events (room_id, ts, kind, data, actor) VALUES (?, ?, ?, ?, ?)",
            (room_id, now, event.kind, _dumps(event.data), actor),
        )
        stored.append(RoomEvent(cast(int, cursor.lastrowid), room_id, now, event.kind, event.data, actor))
    return stored


@read_only
def last_seq(conn: sqlite3.Connection) -> int:
    return cast(int, conn.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])


@read_only
def events_after(conn: sqlite3.Connection, after: int, room_id: str | None, *, limit: int) -> list[RoomEvent]:
    if room_id is None:
        rows = conn.execute(
            "SELECT seq, room_id, ts, kind, data, actor FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        )
    else:
        rows = conn.execute(
            "SELECT seq, room_id, ts, kind, data, actor FROM events "
            "WHERE room_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (room_id, after, limit),
        )
    return [
        RoomEvent(seq, room, ts, kind, json.loads(data), actor) for seq, room, ts, kind, data, actor in rows
    ]


# --- entities ---------------------------------------------------------------------------------------------


def _entities(conn: sqlite3.Connection, room_id: str) -> list[Entity]:
    rows = conn.execute("SELECT body FROM entities WHERE room_id = ? ORDER BY entity_id", (room_id,))
    return [Entity.from_wire(json.loads(body)) for (body,) in rows]


def _room_state_event(status: RoomStatus, entities: list[Entity]) -> PendingEvent:
    """ROOM.STATE, emitted when the status changes (not on every roster change: with a durable roster of
    thousands, repeating the whole roster per join would make the event log quadratic)."""
    return PendingEvent(ev.ROOM_STATE, {"state": status, "entities": [e.to_wire() for e in entities]})


@read_only
def get_entity(conn: sqlite3.Connection, room_id: str, entity_id: str) -> Entity | None:
    row = conn.execute(
        "SELECT body FROM entities WHERE room_id = ? AND entity_id = ?", (room_id, entity_id)
    ).fetchone()
    return None if row is None else Entity.from_wire(json.loads(row[0]))


def _insert_entity(conn: sqlite3.Connection, room_id: str, entity: Entity, now: str) -> list[RoomEvent]:
    status, _ = _ensure_room(conn, room_id, now)
    conn.execute(
        "INSERT INTO entities (room_id, entity_id, body, declared_at) VALUES (?, ?, ?, ?)",
        (room_id, entity.id, _dumps(entity.to_wire()), now),
    )
    pending = [PendingEvent(ev.ENTITY_JOIN, {"entity": entity.to_wire()})]
    new_status = status_after_join(status)
    if new_status != status:
        _set_status(conn, room_id, new_status, now)
        pending.append(_room_state_event(new_status, _entities(conn, room_id)))
    return _emit(conn, room_id, now, pending)


def declare_entity(
    conn: sqlite3.Connection, room_id: str, entity: Entity
) -> tuple[list[Entity], list[RoomEvent]] | None:
    """Declare a new entity; None when the id is already declared (whatever its spec)."""
    with transaction(conn):
        if get_entity(conn, room_id, entity.id) is not None:
            return None
        events = _insert_entity(conn, room_id, entity, now_iso())
        return _entities(conn, room_id), events


def put_entity(
    conn: sqlite3.Connection, room_id: str, entity: Entity
) -> tuple[Literal["created", "updated", "unchanged"], list[RoomEvent]]:
    """Create or replace a declared entity; an identical spec changes nothing and emits nothing."""
    with transaction(conn):
        now = now_iso()
        current = get_entity(conn, room_id, entity.id)
        if current is None:
            return "created", _insert_entity(conn, room_id, entity, now)
        if current == entity:
            return "unchanged", []
        conn.execute(
            "UPDATE entities SET body = ? WHERE room_id = ? AND entity_id = ?",
            (_dumps(entity.to_wire()), room_id, entity.id),
        )
        return "updated", _emit(
            conn, room_id, now, [PendingEvent(ev.ENTITY_UPDATED, {"entity": entity.to_wire()})]
        )


def remove_entity(conn: sqlite3.Connection, room_id: str, entity_id: str) -> list[RoomEvent] | None:
    """Remove a declared entity; None when it was not declared."""
    with transaction(conn):
        now = now_iso()
        deleted = conn.execute(
            "DELETE FROM entities WHERE room_id = ? AND entity_id = ?", (room_id, entity_id)
        ).rowcount
        if not deleted:
            return None
        status, _ = _ensure_room(conn, room_id, now)
        remaining = conn.execute("SELECT COUNT(*) FROM entities WHERE room_id = ?", (room_id,)).fetchone()[0]
        pending = [PendingEvent(ev.ENTITY_LEAVE, {"entityId": entity_id})]
        new_status = status_after_leave(status, remaining=remaining)
        if new_status != status:
            _set_status(conn, room_id, new_status, now)
            pending.append(_room_state_event(new_status, _entities(conn, room_id)))
        return _emit(conn, room_id, now, pending)


# --- live sessions (the hub) ------------------------------------------------------------------------------


@read_only
def admission(conn: sqlite3.Connection, room_id: str, entity_id: str) -> tuple[Entity | None, bool]:
    """What a hub Join needs: the entity's declaration (None when undeclared) and whether the room is
    closed to undeclared entities (an operator manages it with `membership: closed`)."""
    row = conn.execute("SELECT manager FROM rooms WHERE room_id = ?", (room_id,)).fetchone()
    if row is None or row[0] is None:
        return get_entity(conn, room_id, entity_id), False
    return get_entity(conn, room_id, entity_id), _manager_key(json.loads(row[0]))[2] == "closed"


def record_presence(
    conn: sqlite3.Connection, room_id: str, event: PendingEvent, *, live: list[Entity], joined: bool
) -> list[RoomEvent]:
    """A live join or leave (`event`: ENTITY.JOIN or ENTITY.LEAVE) and the room's status, counting the
    declared roster and the `live` entities after it; ROOM.STATE when the status changes."""
    with transaction(conn):
        now = now_iso()
        status, _ = _ensure_room(conn, room_id, now)
        declared = _entities(conn, room_id)
        known = {e.id for e in declared}
        everyone = sorted(declared + [e for e in live if e.id not in known], key=lambda e: e.id)
        new_status = (
            status_after_join(status) if joined else status_after_leave(status, remaining=len(everyone))
        )
        pending = [event]
        if new_status != status:
            _set_status(conn, room_id, new_status, now)
            pending.append(_room_state_event(new_status, everyone))
        return _emit(conn, room_id, now, pending)


def append_events(conn: sqlite3.Connection, room_id: str, pending: list[PendingEvent]) -> list[RoomEvent]:
    """Append events of a room that exists (hub messages, tool calls) to the log."""
    with transaction(conn):
        return _emit(conn, room_id, now_iso(), pending)


# --- policies ---------------------------------------------------------------------------------------------


@read_only
def read_policies(conn: sqlite3.Connection, room_id: str) -> RoomPolicies:
    found = _room_row(conn, room_id)
    return RoomPolicies() if found is None else found[1]


def update_policies(
    conn: sqlite3.Connection, room_id: str, changes: dict[str, Any]
) -> tuple[RoomPolicies, list[RoomEvent]]:
    """Apply `RoomPolicies.updated(**changes)`; an event only when a value changed."""
    with transaction(conn):
        now = now_iso()
        _, current = _ensure_room(conn, room_id, now)
        updated = current.updated(**changes)
        if updated == current:
            return current, []
        conn.execute(
            "UPDATE rooms SET policies = ?, updated_at = ? WHERE room_id = ?",
            (_dumps(updated.to_wire()), now, room_id),
        )
        return updated, _emit(
            conn, room_id, now, [PendingEvent(ev.POLICIES_UPDATED, {"policies": updated.to_wire()})]
        )


# --- the manager -----------------------------------------------------------------------------------------


def _manager_key(manager: dict[str, Any]) -> tuple[object, ...]:
    # Managers recorded before `membership` existed kept their rooms closed.
    return manager["name"], manager["url"], manager.get("membership", "closed")


def set_manager(
    conn: sqlite3.Connection, room_id: str, manager: dict[str, Any] | None
) -> tuple[dict[str, Any] | None, list[RoomEvent]]:
    """Record which operator manages the room (`{"name", "url", "membership"}`; None: none does). The time
    it started is kept while the same manager claims again; an event (`ROOM.MANAGER`) only on a change."""
    with transaction(conn):
        now = now_iso()
        if manager is None and _room_row(conn, room_id) is None:
            return None, []  # releasing an unknown room creates nothing
        _ensure_room(conn, room_id, now)
        raw = conn.execute("SELECT manager FROM rooms WHERE room_id = ?", (room_id,)).fetchone()[0]
        current = None if raw is None else json.loads(raw)
        same = (current is None and manager is None) or (
            current is not None and manager is not None and _manager_key(current) == _manager_key(manager)
        )
        if same:
            return current, []
        stored = None if manager is None else {**manager, "since": now}
        conn.execute(
            "UPDATE rooms SET manager = ?, updated_at = ? WHERE room_id = ?",
            (None if stored is None else _dumps(stored), now, room_id),
        )
        return stored, _emit(conn, room_id, now, [PendingEvent(ev.ROOM_MANAGER, {"manager": stored})])


# --- artifacts --------------------------------------------------------------------------------------------

_MANIFEST_COLUMNS = (
    "v.room_id, v.owner, v.name, v.version, v.type, v.sha256, v.size, v.workspace, v.tags, v.fingerprint, "
    "v.metadata, v.parents, v.port, v.origin_entity, v.promoted, v.ts, v.created_by"
)


def _manifest(row: tuple[Any, ...]) -> Manifest:
    (
        room_id,
        owner,
        name,
        version,
        kind,
        sha,
        size,
        workspace,
        tags,
        fingerprint,
        metadata,
        parents,
        port,
    ) = row[:13]
    origin_entity, promoted, ts, created_by = row[13:17]
    return Manifest(
        room_id=room_id,
        owner=owner or None,
        name=name,
        version=version,
        type=kind,
        sha256=sha,
        size=size,
        workspace=workspace,
        tags=tuple(json.loads(tags)),
        fingerprint=fingerprint,
        metadata=None if metadata is None else json.loads(metadata),
        parents=None if parents is None else tuple(json.loads(parents)),
        port=port,
        origin_entity=origin_entity,
        promoted=bool(promoted),
        ts=ts,
        created_by=created_by,
    )


def _head(
    conn: sqlite3.Connection, room_id: str, owner: str, name: str
) -> tuple[int, str, str | None] | None:
    row = conn.execute(
        "SELECT version, created_at, deleted_at FROM artifact_heads "
        "WHERE room_id = ? AND owner = ? AND name = ?",
        (room_id, owner, name),
    ).fetchone()
    return None if row is None else (row[0], row[1], row[2])


@read_only
def get_manifest(
    conn: sqlite3.Connection, room_id: str, owner: str, name: str, *, version: int | None = None
) -> Manifest | None:
    """The latest live version (None when absent or deleted), or version N (also of a deleted artifact)."""
    if version is None:
        head = _head(conn, room_id, owner, name)
        if head is None or head[2] is not None:
            return None
        version = head[0]
    row = conn.execute(
        f"SELECT {_MANIFEST_COLUMNS} FROM artifact_versions v "
        "WHERE v.room_id = ? AND v.owner = ? AND v.name = ? AND v.version = ?",
        (room_id, owner, name, version),
    ).fetchone()
    return None if row is None else _manifest(row)


@read_only
def list_versions(
    conn: sqlite3.Connection, room_id: str, owner: str, name: str
) -> tuple[list[Manifest], bool] | None:
    """All versions oldest first and whether the artifact is deleted; None when it never existed."""
    head = _head(conn, room_id, owner, name)
    if head is None:
        return None
    rows = conn.execute(
        f"SELECT {_MANIFEST_COLUMNS} FROM artifact_versions v "
        "WHERE v.room_id = ? AND v.owner = ? AND v.name = ? ORDER BY v.version",
        (room_id, owner, name),
    )
    return [_manifest(row) for row in rows], head[2] is not None


@read_only
def list_latest(conn: sqlite3.Connection, room_id: str, owner: str) -> list[Manifest]:
    """The latest version of every live artifact of a workspace, by name."""
    rows = conn.execute(
        f"SELECT {_MANIFEST_COLUMNS} FROM artifact_heads h JOIN artifact_versions v "
        "ON v.room_id = h.room_id AND v.owner = h.owner AND v.name = h.name AND v.version = h.version "
        "WHERE h.room_id = ? AND h.owner = ? AND h.deleted_at IS NULL ORDER BY h.name",
        (room_id, owner),
    )
    return [_manifest(row) for row in rows]


def _insert_version(conn: sqlite3.Connection, manifest: Manifest, *, owner: str, created_at: str) -> None:
    """Insert a version row and point the head at it (`created_at` and `created_by` count only for a new
    head: like the time, the artifact's creator stays when later versions are written)."""
    conn.execute(
        "INSERT INTO artifact_versions (room_id, owner, name, version, type, sha256, size, workspace, tags, "
        "fingerprint, metadata, parents, port, origin_entity, promoted, ts, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            manifest.room_id,
            owner,
            manifest.name,
            manifest.version,
            manifest.type,
            manifest.sha256,
            manifest.size,
            manifest.workspace,
            _dumps(list(manifest.tags)),
            manifest.fingerprint,
            None if manifest.metadata is None else _dumps(manifest.metadata),
            None if manifest.parents is None else _dumps(list(manifest.parents)),
            manifest.port,
            manifest.origin_entity,
            int(manifest.promoted),
            manifest.ts,
            manifest.created_by,
        ),
    )
    conn.execute(
        "INSERT INTO artifact_heads (room_id, owner, name, version, created_at, deleted_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (room_id, owner, name) "
        "DO UPDATE SET version = excluded.version, deleted_at = NULL",
        (manifest.room_id, owner, manifest.name, manifest.version, created_at, manifest.created_by),
    )


def _write(
    conn: sqlite3.Connection,
    room_id: str,
    owner: str,
    draft: ArtifactDraft,
    sha256: str,
    size: int,
    *,
    now: str,
) -> tuple[Manifest, bool, list[PendingEvent]]:
    head = _head(conn, room_id, owner, draft.name)
    if head is not None and head[2] is None:
        latest = get_manifest(conn, room_id, owner, draft.name)
        if latest is not None and latest.sha256 == sha256 and draft.matches(latest):
            return latest, False, []
    _, policies = _ensure_room(conn, room_id, now)
    if owner != ROOM_WORKSPACE and (head is None or head[2] is not None):
        live = conn.execute(
            "SELECT COUNT(*) FROM artifact_heads WHERE room_id = ? AND owner = ? AND deleted_at IS NULL",
            (room_id, owner),
        ).fetchone()[0]
        if live >= policies.max_artifacts_per_entity:
            raise artifact_error(
                409,
                "ArtifactLimitExceeded",
                f"workspace of {owner} holds maxArtifactsPerEntity={policies.max_artifacts_per_entity}",
            )
    manifest = Manifest(
        room_id=room_id,
        owner=owner or None,
        name=draft.name,
        version=1 if head is None else head[0] + 1,
        type=draft.type,
        sha256=sha256,
        size=size,
        workspace=draft.workspace,
        tags=draft.tags,
        fingerprint=draft.fingerprint,
        metadata=draft.metadata,
        parents=draft.parents,
        port=draft.port,
        origin_entity=draft.origin_entity,
        promoted=False,
        ts=now,
        created_by=draft.created_by,
    )
    _insert_version(conn, manifest, owner=owner, created_at=now)
    return manifest, True, [ev.artifact_written(manifest.name, manifest.version, sha256)]


def write_artifact(
    conn: sqlite3.Connection, room_id: str, owner: str, draft: ArtifactDraft, sha256: str, size: int
) -> Written:
    """Store a new version (its blob is already durable), or return the latest when it would repeat it."""
    with transaction(conn):
        now = now_iso()
        manifest, changed, pending = _write(conn, room_id, owner, draft, sha256, size, now=now)
        return Written(manifest, changed, _emit(conn, room_id, now, pending))


def _mark_promoted(conn: sqlite3.Connection, manifest: Manifest) -> Manifest:
    conn.execute(
        "UPDATE artifact_versions SET promoted = 1 "
        "WHERE room_id = ? AND owner = ? AND name = ? AND version = ?",
        (manifest.room_id, ROOM_WORKSPACE, manifest.name, manifest.version),
    )
    return dataclasses.replace(manifest, promoted=True)


def promote(conn: sqlite3.Connection, room_id: str, name: str) -> Written | None:
    """Mark the latest room version promoted; a repeated promote changes nothing. None when absent."""
    with transaction(conn):
        latest = get_manifest(conn, room_id, ROOM_WORKSPACE, name)
        if latest is None:
            return None
        if latest.promoted:
            return Written(latest, False, [])
        now = now_iso()
        promoted = _mark_promoted(conn, latest)
        event = PendingEvent(ev.ARTIFACT_PROMOTED, {"name": name, "version": latest.version})
        return Written(promoted, True, _emit(conn, room_id, now, [event]))


def promote_copy(
    conn: sqlite3.Connection,
    room_id: str,
    from_entity: str,
    name: str,
    *,
    target: str,
    metadata: dict[str, Any] | None,
    created_by: str | None,
) -> Written | None:
    """The reference promote: copy the latest version of an entity's artifact into the room workspace.

    The copy shares the blob (content-addressed), keeps the source type, port, workspace label, tags and
    metadata (unless new metadata is given), records the source SHA-256 as parent, and is marked promoted.
    Promoting unchanged bytes again returns the existing room version. None when the source is absent.
    `created_by` is the caller (the copy is its write).
    """
    with transaction(conn):
        source = get_manifest(conn, room_id, from_entity, name)
        if source is None:
            return None
        now = now_iso()
        draft = ArtifactDraft(
            name=target,
            type=source.type,
            workspace=source.workspace,
            tags=source.tags,
            fingerprint=source.fingerprint,
            metadata=source.metadata if metadata is None else metadata,
            parents=(source.sha256,),
            port=source.port,
            origin_entity=from_entity,
            created_by=created_by,
        )
        manifest, changed, pending = _write(
            conn, room_id, ROOM_WORKSPACE, draft, source.sha256, source.size, now=now
        )
        if manifest.promoted:
            return Written(manifest, changed, [])
        manifest = _mark_promoted(conn, manifest)
        pending.append(PendingEvent(ev.ARTIFACT_PROMOTED, {"name": target, "version": manifest.version}))
        return Written(manifest, True, _emit(conn, room_id, now, pending))


def delete_artifact(conn: sqlite3.Connection, room_id: str, name: str) -> list[RoomEvent] | None:
    """Tombstone a room artifact (its versions stay readable); None when absent or already deleted."""
    with transaction(conn):
        now = now_iso()
        deleted = conn.execute(
            "UPDATE artifact_heads SET deleted_at = ? "
            "WHERE room_id = ? AND owner = ? AND name = ? AND deleted_at IS NULL",
            (now, room_id, ROOM_WORKSPACE, name),
        ).rowcount
        if not deleted:
            return None
        return _emit(conn, room_id, now, [PendingEvent(ev.ARTIFACT_DELETED, {"name": name})])


# --- the whole room ---------------------------------------------------------------------------------------


_STATE_ARTIFACTS = """
SELECT json_object(
    'name', v.name, 'type', v.type, 'workspace', v.workspace, 'tags', json(v.tags), 'sha256', v.sha256,
    'size', v.size, 'version', v.version, 'promoted', json(CASE WHEN v.promoted THEN 'true' ELSE 'false' END),
    'fingerprint', v.fingerprint, 'createdAt', h.created_at, 'updatedAt', v.ts,
    'createdBy', h.created_by, 'updatedBy', v.created_by)
FROM artifact_heads h JOIN artifact_versions v
    ON v.room_id = h.room_id AND v.owner = h.owner AND v.name = h.name AND v.version = h.version
WHERE h.room_id = ? AND h.owner = '' AND h.deleted_at IS NULL
ORDER BY h.name
"""


@read_only
def read_state(conn: sqlite3.Connection, room_id: str) -> RoomSnapshot:
    """Roster, live room artifacts, policies and revision in one read transaction (four indexed queries)."""
    conn.execute("BEGIN")
    try:
        found = _room_row(conn, room_id)
        if found is None:
            return RoomSnapshot(room_id, UNDECLARED, 0, [], [], RoomPolicies())
        status, policies = found
        manager = conn.execute("SELECT manager FROM rooms WHERE room_id = ?", (room_id,)).fetchone()[0]
        revision = conn.execute(
            "SELECT COALESCE(MAX(seq), 0) FROM events WHERE room_id = ?", (room_id,)
        ).fetchone()[0]
        entities = conn.execute(
            "SELECT entity_id, body FROM entities WHERE room_id = ? ORDER BY entity_id", (room_id,)
        ).fetchall()
        artifacts = [row[0] for row in conn.execute(_STATE_ARTIFACTS, (room_id,))]
        return RoomSnapshot(room_id, status, revision, entities, artifacts, policies, manager)
    finally:
        conn.execute("COMMIT")


# --- batches ----------------------------------------------------------------------------------------------


def apply_changes(conn: sqlite3.Connection, room_id: str, changes: list[Change]) -> list[object]:
    """Apply validated changes in order, in one transaction, each through its single endpoint's function
    (and so with its events); per change, that function's result, or the RoomServerError it raised (its
    own savepoint rolled back, the others kept)."""
    results: list[object] = []
    with transaction(conn):
        for change in changes:
            try:
                results.append(_apply(conn, room_id, change))
            except RoomServerError as exc:
                results.append(exc)
    return results


def _apply(conn: sqlite3.Connection, room_id: str, change: Change) -> object:
    match change:
        case PutEntity(entity):
            return put_entity(conn, room_id, entity)
        case RemoveEntity(entity_id):
            return remove_entity(conn, room_id, entity_id)
        case PutPolicies(changes):
            return update_policies(conn, room_id, changes)
        case PutManager(manager):
            return set_manager(conn, room_id, manager)
        case DeleteArtifact(name):
            return delete_artifact(conn, room_id, name)
        case PromoteArtifact(name):
            return promote(conn, room_id, name)
