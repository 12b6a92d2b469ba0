"""The cheap `304`: `GET /room/{roomId}/state` with a current `If-None-Match` is answered from memory
(no database read, `api/conditional.py`), still only to a token holding `room:read`, and the ETag still
changes with every write, presence change and provider change."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomserver.domain.entities import Entity
from roomserver.domain.sessions import Session
from tests.support.roomserver import running_roomserver

ROOM = "room-etag-test-01"
STATE = f"/room/{ROOM}/state"


@pytest.fixture
def db_calls(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the repository functions the server runs from now on."""
    database = app.state.roomserver.db
    calls: list[str] = []
    run = database.run

    async def counted(operation: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        calls.append(operation.__name__)
        return await run(operation, *args, **kwargs)

    monkeypatch.setattr(database, "run", counted)
    return calls


async def _conditional(client: httpx.AsyncClient, etag: str) -> httpx.Response:
    return await client.get(STATE, headers={"If-None-Match": etag})


async def test_a_current_etag_is_answered_without_reading_the_room(
    client: httpx.AsyncClient, db_calls: list[str]
) -> None:
    await client.put(f"/room/{ROOM}/entities/E-agent-1", json={"kind": "agent"})
    first = await client.get(STATE)
    etag = first.headers["ETag"]
    db_calls.clear()
    for _ in range(3):
        answer = await _conditional(client, etag)
        assert answer.status_code == 304
        assert answer.headers["ETag"] == etag
        assert answer.content == b""
    assert db_calls == []  # the room was not read
    other = await _conditional(client, '"1-0000000000000000"')  # not the current one: the whole state
    assert other.status_code == 200
    assert other.content == first.content
    assert other.headers["ETag"] == etag
    assert db_calls == []  # the body last built, the room unchanged since: not read either


async def test_many_readers_of_an_unchanged_room_cost_one_read_and_a_change_is_seen_at_once(
    client: httpx.AsyncClient, db_calls: list[str]
) -> None:
    await client.put(f"/room/{ROOM}/entities/E-agent-1", json={"kind": "agent"})
    db_calls.clear()
    first, *others = [await client.get(STATE) for _ in range(5)]
    assert db_calls == ["read_state"]
    assert all(o.content == first.content and o.headers["ETag"] == first.headers["ETag"] for o in others)
    await client.put(f"/room/{ROOM}/entities/E-agent-2", json={"kind": "agent"})
    after = await client.get(STATE)
    assert [e["id"] for e in after.json()["entities"]] == ["E-agent-1", "E-agent-2"]
    assert after.headers["ETag"] != first.headers["ETag"]
    assert db_calls.count("read_state") == 2


async def test_a_write_changes_the_etag(client: httpx.AsyncClient, db_calls: list[str]) -> None:
    etag = (await client.get(STATE)).headers["ETag"]
    await client.put(f"/rooms/{ROOM}/policies", json={"maxArtifactsPerEntity": 5})
    after = await _conditional(client, etag)
    assert after.status_code == 200
    assert after.json()["policies"]["maxArtifactsPerEntity"] == 5
    assert after.headers["ETag"] != etag
    unchanged = await client.put(f"/rooms/{ROOM}/policies", json={"maxArtifactsPerEntity": 5})
    assert unchanged.status_code == 200  # no change, no event: the ETag stays and 304 stays cheap
    db_calls.clear()
    assert (await _conditional(client, after.headers["ETag"])).status_code == 304
    assert db_calls == []


async def test_presence_changes_the_etag(app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.put(f"/room/{ROOM}/entities/E-agent-1", json={"kind": "agent"})
    etag = (await client.get(STATE)).headers["ETag"]
    sessions = app.state.roomserver.sessions  # the hub's registry: what a hub Join records

    async def close() -> None:
        return None

    entity = Entity(id="E-agent-1", kind="agent")
    for connection in ("c1", "c2"):  # a second session changes only `sessions`, with no room event
        sessions.add(Session(connection, ROOM, entity, None, declared=True), close)
        answer = await _conditional(client, etag)
        assert answer.status_code == 200
        etag = answer.headers["ETag"]
    assert answer.json()["entities"][0]["sessions"] == 2
    sessions.remove("c2")
    assert (await _conditional(client, etag)).status_code == 200


async def test_a_provider_change_changes_the_etag(client: httpx.AsyncClient) -> None:
    etag = (await client.get(STATE)).headers["ETag"]
    loaded = await client.post(
        "/admin/mcp/load", json={"providers": [{"id": "analysis-tool", "url": "http://127.0.0.1:9"}]}
    )
    assert loaded.status_code == 200
    answer = await _conditional(client, etag)
    assert answer.status_code == 200
    assert [r["name"] for r in answer.json()["resources"]] == ["analysis-tool"]


async def test_the_memory_304_still_needs_a_reading_token_and_a_valid_room(tmp_path: Path) -> None:
    async with running_roomserver(tmp_path / "data", scopes=("room:entities:write",)) as server:
        admin = {"Authorization": f"Bearer {server.admin_token}"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            etag = (await http.get(STATE, headers=admin)).headers["ETag"]
            assert (await http.get(STATE, headers={**admin, "If-None-Match": etag})).status_code == 304
            for headers, status, code in (
                ({}, 401, "AUTH_REQUIRED"),
                ({"Authorization": "Bearer not-a-token-of-this-server"}, 401, "AUTH_REQUIRED"),
                ({"Authorization": f"Bearer {server.token}"}, 403, "INSUFFICIENT_SCOPE"),  # no room:read
            ):
                answer = await http.get(STATE, headers={**headers, "If-None-Match": etag})
                assert (answer.status_code, answer.json()["code"]) == (status, code)
            bad_room = await http.get("/room/room-x/state", headers={**admin, "If-None-Match": etag})
            assert (bad_room.status_code, bad_room.json()["code"]) == (400, "INVALID_ROOM_ID")
