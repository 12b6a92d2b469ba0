"""Nothing the room server does per request scans every room: with 10,000 rooms stored, every SQL
statement of the hot paths (state read, writes, batches, events, presence, the group commit's report)
is an indexed search, checked on SQLite's own query plans. (The room server has no room listing to page:
the reference has none either; its only list, a room's artifacts, is per room.)"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from roomserver.domain import events as ev
from roomserver.domain.artifacts import ArtifactDraft
from roomserver.domain.changes import DeleteArtifact, PromoteArtifact, PutEntity, PutPolicies, RemoveEntity
from roomserver.domain.entities import Entity
from roomserver.domain.events import PendingEvent
from roomserver.storage import repository
from roomserver.storage.database import _CHANGED_ROOMS, Database, transaction

ROOMS = 10_000
TABLES = ("rooms", "entities", "artifact_versions", "artifact_heads", "events")


@pytest.fixture(scope="module")
def populated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database of 10,000 rooms of two entities and an artifact each (written in one transaction)."""
    path = tmp_path_factory.mktemp("scale") / "roomserver.db"

    async def create() -> None:
        database = Database(path)
        await database.open()
        await database.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    with transaction(conn):
        for i in range(ROOMS):
            room = f"room-scale-{i:05d}"
            for entity in ("E-first", "E-second"):
                repository.put_entity(conn, room, Entity(entity, "agent"))
            repository.write_artifact(conn, room, "", _draft("plan"), "a" * 64, 10)
    conn.close()
    return path


def _draft(name: str) -> ArtifactDraft:
    return ArtifactDraft(
        name=name,
        type="document",
        workspace="shared",
        tags=(),
        fingerprint=None,
        metadata=None,
        parents=None,
        port=None,
        origin_entity="E-SERVICE",
        created_by="test",
    )


def _full_scans(conn: sqlite3.Connection, statements: list[str]) -> list[tuple[str, str]]:
    """(statement, plan step) for every step that scans one of the server's tables without an index."""
    found = []
    for statement in statements:
        head = statement.lstrip().split(None, 1)[0].upper()
        if head not in ("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"):
            continue
        for *_, detail in conn.execute(f"EXPLAIN QUERY PLAN {statement}"):
            words = detail.split()
            if words[:1] == ["SCAN"] and words[1] in TABLES and "INDEX" not in words:
                found.append((statement, detail))
    return found


def test_no_hot_statement_scans_every_room(populated: Path) -> None:
    conn = sqlite3.connect(populated, isolation_level=None)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    room = "room-scale-04321"
    snapshot = repository.read_state(conn, room)
    assert [eid for eid, _ in snapshot.entities] == ["E-first", "E-second"]
    with transaction(conn):
        repository.put_entity(conn, room, Entity("E-third", "agent"))
        repository.declare_entity(conn, room, Entity("E-fourth", "agent"))
        repository.write_artifact(conn, room, "", _draft("notes"), "b" * 64, 3)
        repository.write_artifact(conn, room, "E-first", _draft("mine"), "c" * 64, 3)
        changes = [
            PutEntity(Entity("E-fifth", "human")),
            RemoveEntity("E-second"),
            PutPolicies({"max_artifacts_per_entity": 3}),
            PromoteArtifact("plan"),
            DeleteArtifact("notes"),
        ]
        results = repository.apply_changes(conn, room, changes)
        assert not any(isinstance(result, Exception) for result in results)
        repository.set_manager(conn, room, {"name": "operator", "url": None, "membership": "closed"})
        repository.record_presence(
            conn, room, PendingEvent(ev.ENTITY_JOIN, {}), live=[Entity("E-guest", "agent")], joined=True
        )
        repository.append_events(conn, room, [PendingEvent(ev.MESSAGE, {"text": "hi"})])
        repository.promote_copy(conn, room, "E-first", "mine", target="mine", metadata=None, created_by="t")
        for entity in ("E-first", "E-third", "E-fourth", "E-fifth"):
            repository.remove_entity(conn, room, entity)
    repository.admission(conn, room, "E-first")
    repository.read_policies(conn, room)
    repository.get_manifest(conn, room, "", "plan", version=1)
    repository.list_versions(conn, room, "", "plan")
    repository.list_latest(conn, room, "")
    repository.events_after(conn, 0, room, limit=500)
    repository.events_after(conn, 3 * ROOMS, None, limit=500)
    repository.last_seq(conn)
    conn.execute(_CHANGED_ROOMS, (3 * ROOMS,)).fetchall()
    conn.set_trace_callback(None)
    assert len(statements) > 50
    assert _full_scans(conn, statements) == []
    assert repository.read_state(conn, room).status == "ended"
    conn.close()
