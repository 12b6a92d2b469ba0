"""Group commit: concurrent writes share one transaction and one fsync, a failing write fails alone, reads
do not wait behind the queue, and kill -9 among concurrent writers loses no acknowledged write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from roomserver.storage import repository
from roomserver.storage.database import Database, read_only, transaction
from tests.support.roomserver import roomserver_process, start_roomserver_process

ROOM = "room-group-commit-01"


def _insert(conn: sqlite3.Connection, key: str) -> str:
    with transaction(conn):
        conn.execute("INSERT INTO kv (k) VALUES (?)", (key,))
    return key


def _insert_then_fail(conn: sqlite3.Connection, key: str) -> None:
    conn.execute("INSERT INTO kv (k) VALUES (?)", (key,))
    raise ValueError(f"refused {key}")


def _hold(conn: sqlite3.Connection, entered: threading.Event, gate: threading.Event) -> None:
    entered.set()
    gate.wait(10)  # keeps the writer busy until every other write is queued


@read_only
def _write_from_reader(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT INTO kv (k) VALUES ('x')")


async def _held(database: Database) -> tuple[asyncio.Future[None], threading.Event]:
    """A write that keeps the writer thread busy until the returned gate is set."""
    entered, gate = threading.Event(), threading.Event()
    held = asyncio.ensure_future(database.run(_hold, entered, gate))
    assert await asyncio.to_thread(entered.wait, 10)
    return held, gate


def _keys(conn: sqlite3.Connection) -> set[str]:
    return {k for (k,) in conn.execute("SELECT k FROM kv")}


async def test_a_group_commits_once_and_a_failing_write_fails_alone(tmp_path: Path) -> None:
    changed: list[dict[str, int]] = []
    database = Database(tmp_path / "db.sqlite", on_commit=changed.append)
    await database.open()
    try:
        await database.run(lambda conn: conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY)"))
        start = database.commits
        held, gate = await _held(database)
        writes = [asyncio.ensure_future(database.run(_insert, f"k{i}")) for i in range(50)]
        failing = asyncio.ensure_future(database.run(_insert_then_fail, "bad"))
        duplicate = asyncio.ensure_future(database.run(_insert, "k7"))  # a constraint error, in the group
        gate.set()
        await held
        assert await asyncio.gather(*writes) == [f"k{i}" for i in range(50)]
        with pytest.raises(ValueError, match="refused bad"):
            await failing
        with pytest.raises(sqlite3.IntegrityError):
            await duplicate
        assert database.commits - start == 2  # `_hold`'s group, then the other 52 writes together
        keys = await database.run(_keys)
        assert keys == {f"k{i}" for i in range(50)}  # the failed writes' rows were rolled back, no others
        assert changed == []  # no room event was appended
    finally:
        await database.close()


async def test_reads_do_not_wait_behind_the_queue(tmp_path: Path) -> None:
    database = Database(tmp_path / "db.sqlite")
    await database.open()
    try:
        await database.run(lambda conn: conn.execute("CREATE TABLE kv (k TEXT PRIMARY KEY)"))
        held, gate = await _held(database)
        # the writer is busy: a read still answers (at once, from a reader connection)
        assert await asyncio.wait_for(database.run(repository.last_seq), timeout=5) == 0
        assert not held.done()
        gate.set()
        await held
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await database.run(_write_from_reader)  # readers cannot write
    finally:
        await database.close()


async def test_concurrent_requests_share_commits_and_report_their_rooms(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    server = app.state.roomserver
    start = server.db.commits
    rooms = [f"room-group-{i:02d}x" for i in range(4)]

    async def declare(i: int) -> int:
        body = {"entityId": f"E-writer-{i:03d}", "kind": "agent"}
        answer = await client.put(f"/room/{rooms[i % 4]}/entities/E-writer-{i:03d}", json=body)
        return answer.status_code

    assert await asyncio.gather(*(declare(i) for i in range(200))) == [201] * 200
    commits = server.db.commits - start
    assert 1 <= commits < 200  # writes that arrived together shared a commit
    for room in rooms:
        state = (await client.get(f"/room/{room}/state")).json()
        assert len(state["entities"]) == 50
    assert server.feed.latest == (await server.db.run(repository.last_seq))
    assert all(server.state_tags.mark(room) > 0 for room in rooms)  # each commit reported its rooms
    assert server.state_tags.mark("room-never-written") == 0


async def _write_until_killed(
    url: str, token: str, worker: int, acked: set[str], enough: asyncio.Event
) -> None:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as http:
        for i in range(100_000):
            entity_id = f"E-w{worker:02d}-{i:05d}"
            body = {"entityId": entity_id, "kind": "agent"}
            try:
                if i % 5 == 4:  # every fifth write is a batch of three
                    ids = [f"{entity_id}-{n}" for n in range(3)]
                    items = [{"op": "putEntity", "entity": {"entityId": e, "kind": "agent"}} for e in ids]
                    answer = await http.post(f"/room/{ROOM}/batch", json={"items": items})
                    assert answer.status_code == 200, answer.text
                    assert {r["status"] for r in answer.json()["results"]} == {201}
                    acked.update(ids)
                else:
                    answer = await http.put(f"/room/{ROOM}/entities/{entity_id}", json=body)
                    assert answer.status_code == 201, answer.text
                    acked.add(entity_id)
            except httpx.TransportError:
                return  # the server died under this request: it was never acknowledged
            if len(acked) >= 200:
                enough.set()


@pytest.mark.slow
async def test_kill_9_among_concurrent_writers_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_roomserver_process(data_dir)
    acked: set[str] = set()
    enough = asyncio.Event()
    workers = [
        asyncio.create_task(_write_until_killed(first.url, first.token, w, acked, enough)) for w in range(16)
    ]
    waiting = asyncio.create_task(enough.wait())
    done, _ = await asyncio.wait([waiting, *workers], return_when=asyncio.FIRST_COMPLETED)
    assert done == {waiting}, "a writer stopped before the crash"
    first.kill()  # SIGKILL while sixteen writers have requests in flight
    await asyncio.gather(*workers)

    with roomserver_process(data_dir) as second:
        headers = {"Authorization": f"Bearer {second.token}"}
        async with httpx.AsyncClient(base_url=second.url, headers=headers, timeout=10) as http:
            state = (await http.get(f"/room/{ROOM}/state")).json()
    stored = {e["id"] for e in state["entities"]}
    assert len(acked) >= 200
    assert acked <= stored  # every acknowledged write survived
