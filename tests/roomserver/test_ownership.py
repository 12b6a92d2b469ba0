"""Who wrote each artifact version (`createdBy`, `updatedBy`) and which operator manages a room
(`PUT/DELETE /rooms/{roomId}/manager`, `manager` in the state), and the schema migration that adds them."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import httpx

from roomserver.api.schemas import ManagerOut, RoomStateOut
from roomserver.storage import repository
from roomserver.storage.database import SCHEMA_VERSION, Database
from tests.support.roomserver import RoomServerHandle, running_roomserver

ROOM = "room-ai-lab-01"
MEMBER = {"kind": "human", "displayName": "Owner"}


async def _state(client: httpx.AsyncClient) -> dict[str, Any]:
    answer = await client.get(f"/room/{ROOM}/state")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    RoomStateOut.model_validate(body)
    return body


async def _write(client: httpx.AsyncClient, name: str, data: bytes, *, entity: str | None = None) -> Any:
    files = {"spec": (None, json.dumps({"name": name, "type": "document"})), "data": (name, data)}
    headers = {"X-Entity-Id": entity} if entity else {}
    answer = await client.post(f"/rooms/{ROOM}/artifacts", files=files, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()["manifest"]


async def test_every_version_records_its_writer(client: httpx.AsyncClient) -> None:
    assert (await client.put(f"/room/{ROOM}/entities/E-human-owner", json=MEMBER)).status_code == 201
    first = await _write(client, "plan", b"v1")  # a token without X-Entity-Id: the token's name
    assert first["createdBy"] == "test"
    edited = await _write(client, "plan", b"v2", entity="E-human-owner")
    assert edited["createdBy"] == "E-human-owner"
    notes = await _write(client, "meeting-notes", b"notes", entity="E-human-owner")
    assert notes["createdBy"] == "E-human-owner"
    again = await _write(client, "plan", b"v2", entity="E-human-owner")  # a repeat is no new version
    assert again["version"] == 2

    artifacts = {a["name"]: a for a in (await _state(client))["artifacts"]}
    assert (artifacts["plan"]["createdBy"], artifacts["plan"]["updatedBy"]) == ("test", "E-human-owner")
    assert (artifacts["meeting-notes"]["createdBy"], artifacts["meeting-notes"]["updatedBy"]) == (
        "E-human-owner",
        "E-human-owner",
    )
    versions = (await client.get(f"/rooms/{ROOM}/artifacts/plan/versions")).json()["items"]
    assert [v["createdBy"] for v in versions] == ["test", "E-human-owner"]


async def test_a_promoted_copy_is_written_by_the_promoter(client: httpx.AsyncClient) -> None:
    for entity, kind in (("E-writer", "agent"), ("E-orch", "orchestrator")):
        assert (await client.put(f"/room/{ROOM}/entities/{entity}", json={"kind": kind})).status_code == 201
    files = {"spec": (None, json.dumps({"name": "draft", "type": "document"})), "data": ("draft", b"d")}
    written = await client.post(
        f"/rooms/{ROOM}/entities/E-writer/artifacts", files=files, headers={"X-Entity-Id": "E-writer"}
    )
    assert written.json()["manifest"]["createdBy"] == "E-writer"
    copied = await client.post(
        f"/rooms/{ROOM}/artifacts/promote",
        json={"fromEntity": "E-writer", "name": "draft"},
        headers={"X-Entity-Id": "E-orch"},
    )
    assert copied.json()["manifest"]["createdBy"] == "E-orch"


async def test_the_manager_is_set_idempotently_shown_in_the_state_and_released(
    client: httpx.AsyncClient,
) -> None:
    assert (await _state(client))["manager"] is None
    body = {"name": "operator", "url": "http://127.0.0.1:8080"}
    first = await client.put(f"/rooms/{ROOM}/manager", json=body)
    assert first.status_code == 200
    manager = ManagerOut.model_validate(first.json())
    assert (manager.name, manager.url) == ("operator", "http://127.0.0.1:8080")
    state = await _state(client)
    assert state["manager"] == first.json()
    again = await client.put(f"/rooms/{ROOM}/manager", json=body)
    assert again.json() == first.json()  # `since` kept
    assert (await _state(client))["revision"] == state["revision"]  # no event for a repeat

    moved = await client.put(f"/rooms/{ROOM}/manager", json={"name": "operator-2"})
    assert (moved.json()["name"], moved.json()["url"]) == ("operator-2", None)
    assert (await _state(client))["revision"] == state["revision"] + 1  # ROOM.MANAGER

    assert (await client.delete(f"/rooms/{ROOM}/manager")).status_code == 204
    assert (await _state(client))["manager"] is None
    assert (await client.delete(f"/rooms/{ROOM}/manager")).status_code == 204
    assert (await client.delete("/rooms/room-never-seen/manager")).status_code == 204
    assert (await client.get("/room/room-never-seen/state")).json()["status"] == "init"


async def test_a_bad_manager_body_is_refused_naming_the_field(client: httpx.AsyncClient) -> None:
    for body, field in (({"name": ""}, "name"), ({"name": "op", "url": "ftp://x"}, "url"), ({}, "name")):
        answer = await client.put(f"/rooms/{ROOM}/manager", json=body)
        assert answer.status_code in (400, 422), answer.text
        assert field in answer.text
    assert (await client.put(f"/rooms/{ROOM}/manager", json={"name": "op", "x": 1})).status_code in (400, 422)


async def test_claiming_a_room_needs_room_admin(tmp_path: Path) -> None:
    scopes = ("room:read", "room:entities:write", "room:artifacts:write")
    async with running_roomserver(tmp_path / "limited", scopes=scopes) as limited:
        handle: RoomServerHandle = limited
        async with httpx.AsyncClient(
            base_url=handle.url, headers={"Authorization": f"Bearer {handle.token}"}
        ) as http:
            answer = await http.put(f"/rooms/{ROOM}/manager", json={"name": "op"})
            assert answer.status_code == 403
            assert answer.json()["code"] == "INSUFFICIENT_SCOPE"
            assert (await http.delete(f"/rooms/{ROOM}/manager")).status_code == 403


async def test_a_version_1_database_is_migrated_and_old_rows_have_no_writer(tmp_path: Path) -> None:
    path = tmp_path / "roomserver.db"
    database = Database(path)
    await database.open()
    await database.close()
    with sqlite3.connect(path) as conn:  # make it what a version-1 server left behind
        conn.execute("ALTER TABLE rooms DROP COLUMN manager")
        conn.execute("ALTER TABLE artifact_versions DROP COLUMN created_by")
        conn.execute("ALTER TABLE artifact_heads DROP COLUMN created_by")
        conn.execute("ALTER TABLE events DROP COLUMN actor")
        conn.execute(
            "INSERT INTO rooms VALUES (?, 'init', ?, 't', 't')",
            (
                ROOM,
                '{"dmVisibilityDefault":"team","allowResourceCreation":false,"maxArtifactsPerEntity":100}',
            ),
        )
        conn.execute(
            "INSERT INTO artifact_versions VALUES (?, '', 'old', 1, 'document', ?, 1, 'shared', '[]', NULL, "
            "NULL, NULL, NULL, 'E-SERVICE', 0, '2026-01-01T00:00:00Z')",
            (ROOM, "0" * 64),
        )
        conn.execute(
            "INSERT INTO artifact_heads VALUES (?, '', 'old', 1, '2026-01-01T00:00:00Z', NULL)", (ROOM,)
        )
        conn.execute("PRAGMA user_version=1")
    conn.close()

    migrated = Database(path)
    await migrated.open()
    try:
        snapshot = await migrated.run(repository.read_state, ROOM)
        (artifact,) = (json.loads(a) for a in snapshot.artifacts)
        assert (artifact["name"], artifact["createdBy"], artifact["updatedBy"]) == ("old", None, None)
        assert snapshot.manager is None
    finally:
        await migrated.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 4
    conn.close()
