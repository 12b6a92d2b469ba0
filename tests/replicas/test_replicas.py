"""Several `roomop serve` replicas on one PostgreSQL store (issue 14): every room owned by exactly one
replica, a killed replica's rooms taken over and converging, a paused replica fenced out without a
fight, one order for applies sent to different replicas, and one operator per SQLite store. (Times are
printed, never asserted: speed is measured in `bench/bench_replicas.py`.)"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.replicas.conftest import Cluster, eventually, server_client
from tests.service.conftest import room_spec
from tests.service.test_durability import roomop_serve
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port

pytestmark = pytest.mark.postgres
ROOMS = [f"room-replica-{index:03d}" for index in range(100)]


async def apply_all(cluster: Cluster, specs: list[dict[str, object]], *, via: list[str]) -> list[int]:
    """POST each spec to the replicas of `via` in turn (20 at a time); the answers' status codes."""
    limit = asyncio.Semaphore(20)

    async def one(http: httpx.AsyncClient, spec: dict[str, object]) -> int:
        async with limit:
            return (await http.post("/apply", json=spec)).status_code

    clients = [httpx.AsyncClient(base_url=cluster.replicas[name].url, timeout=60) for name in via]
    try:
        return await asyncio.gather(*(one(clients[i % len(clients)], spec) for i, spec in enumerate(specs)))
    finally:
        for client in clients:
            await client.aclose()


async def all_see(cluster: Cluster, count: int) -> bool:
    live = [await cluster.live_replicas(name) for name in cluster.replicas]
    return all(seen == count for seen in live)


async def desired(cluster: Cluster, revision: int, rooms: list[str]) -> bool:
    """Every room of `rooms` has `revision` desired and no run left unfinished."""
    rows = await cluster.query(
        "SELECT count(*) AS n FROM rooms WHERE room_id = ANY(:rooms) AND revision = :revision",
        rooms=rooms,
        revision=revision,
    )
    open_runs = await cluster.query(
        "SELECT count(*) AS n FROM runs WHERE room_id = ANY(:rooms) AND status IN ('queued', 'running')",
        rooms=rooms,
    )
    return rows[0].n == len(rooms) and open_runs[0].n == 0


async def applies_keep_one_order(cluster: Cluster, room: str) -> None:
    """Versions 1 to 6 of `room` sent to the three replicas in turn (each accepted as the next revision,
    answered at once by a replica that does not own the room): the room ends at version 6, its runs
    ran in revision order (each older one succeeded before it or was superseded)."""
    names = ["r1", "r2", "r3"]
    for version in range(1, 7):
        spec = room_spec(room, version=version, entities=1)
        spec["spec"]["entities"][0]["displayName"] = f"v{version}"  # type: ignore[index]
        async with httpx.AsyncClient(base_url=cluster.replicas[names[version % 3]].url, timeout=60) as http:
            answer = await http.post("/apply", json=spec)
            assert answer.status_code in (200, 202), answer.text
            assert answer.json()["revision"] == version
    await eventually(lambda: desired(cluster, 6, [room]), what="revision 6 desired")
    runs = await cluster.query(
        "SELECT revision, status, finished_at FROM runs"
        " WHERE room_id = :room AND trigger = 'apply' ORDER BY revision",
        room=room,
    )
    assert [run.revision for run in runs] == [1, 2, 3, 4, 5, 6]
    last = runs[-1]
    assert last.status == "succeeded"
    assert all(run.status in ("succeeded", "superseded") for run in runs)
    assert all(run.finished_at <= last.finished_at for run in runs if run.status == "succeeded")
    async with server_client(cluster) as server:
        state = (await server.get(f"/room/{room}/state")).json()
    assert [entity.get("displayName") for entity in state["entities"]] == ["v6"]


async def unmanaged_through_another_replica(cluster: Cluster, room: str) -> None:
    """`DELETE /rooms/{id}` on a replica that does not own the room: its owner stops managing it too."""
    owner = (await cluster.holders())[room][0]
    other = next(name for name in cluster.replicas if name != owner)
    async with httpx.AsyncClient(timeout=30) as http:
        assert (await http.delete(f"{cluster.replicas[other].url}/rooms/{room}")).status_code == 200

        async def stopped_there() -> bool:
            view = (await http.get(f"{cluster.replicas[owner].url}/rooms/{room}")).json()
            return view["managed"] is False

        await eventually(stopped_there, what="the owner stopped managing the room")


async def test_three_replicas_share_the_rooms_and_take_over_a_killed_ones(cluster: Cluster) -> None:
    cluster.start("r1", "r2", "r3")
    await eventually(lambda: all_see(cluster, 3), what="every replica sees the three")
    started = time.monotonic()
    codes = await apply_all(cluster, [room_spec(room, entities=1) for room in ROOMS], via=["r1", "r2", "r3"])
    assert set(codes) <= {200, 202}
    await eventually(lambda: desired(cluster, 1, ROOMS), what="the 100 rooms converged")
    print(f"100 rooms applied through three replicas converged in {time.monotonic() - started:.1f} s")

    holders = await eventually(cluster.holders, what="leases")
    assert sorted(holders) == ROOMS  # every room has one live lease (the room id is its primary key)
    by_replica = {
        name: [room for room, (holder, _) in holders.items() if holder == name] for name in cluster.replicas
    }
    assert all(by_replica.values()), by_replica  # rendezvous hashing gave each replica a share

    async def owned_as_metrics_say() -> bool:
        owned = {
            name: await replica.metric("room_operator_rooms_owned")
            for name, replica in cluster.replicas.items()
        }
        return owned == {name: len(rooms) for name, rooms in by_replica.items()}

    await eventually(owned_as_metrics_say, what="each replica's rooms_owned matches the leases")
    owners = {room: holder for room, (holder, _) in holders.items()}

    async def owners_as_every_replica_shows() -> bool:
        async with httpx.AsyncClient(timeout=30) as http:
            for replica in cluster.replicas.values():
                status = (await http.get(f"{replica.url}/status", params={"limit": 100})).json()
                rooms = (await http.get(f"{replica.url}/rooms", params={"limit": 100})).json()
                shown = {room["roomId"]: room["owner"] for room in status["rooms"]}
                listed = {item["roomId"]: item["owner"] for item in rooms["items"]}
                if not shown == listed == owners:
                    return False
        return True

    await eventually(owners_as_every_replica_shows, what="/status and /rooms name each room's owner")
    async with server_client(cluster) as server:
        for room in ROOMS[::10]:
            state = (await server.get(f"/room/{room}/state")).json()
            assert [entity["id"] for entity in state["entities"]] == ["E-agent-0"]

    started = time.monotonic()
    await applies_keep_one_order(cluster, "room-order-01")
    print(f"six applies through three replicas converged in {time.monotonic() - started:.1f} s")
    await unmanaged_through_another_replica(cluster, "room-order-01")

    victim = cluster.replicas["r1"]
    orphans = by_replica["r1"]
    victim.process.send_signal(signal.SIGKILL)
    victim.process.wait(timeout=10)
    killed_at = time.monotonic()

    async def taken_over() -> dict[str, tuple[str, int]] | None:
        now = await cluster.holders()
        moved = all(room in now and now[room][0] in ("r2", "r3") for room in orphans)
        return now if moved else None

    after = await eventually(taken_over, what="the killed replica's rooms taken over")
    print(f"takeover of {len(orphans)} rooms after kill -9: {time.monotonic() - killed_at:.1f} s (lease 3 s)")
    assert all(after[room][1] >= holders[room][1] + 1 for room in orphans)  # a new epoch for each
    assert all(after[room] == holders[room] for room in ROOMS if room not in orphans)  # the others stayed
    codes = await apply_all(
        cluster, [room_spec(room, version=2, entities=2) for room in orphans], via=["r2", "r3"]
    )
    assert set(codes) <= {200, 202}
    await eventually(lambda: desired(cluster, 2, orphans), what="the taken-over rooms converged on v2")
    async with server_client(cluster) as server:
        state = (await server.get(f"/room/{orphans[0]}/state")).json()
        assert sorted(entity["id"] for entity in state["entities"]) == ["E-agent-0", "E-agent-1"]


async def test_a_paused_replica_is_fenced_and_does_not_fight(cluster: Cluster) -> None:
    cluster.settings = {  # slow runs: the pause lands in the middle of one
        "ROOMOP_ROOM_SERVER__BATCH": "false",
        "ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "10",
    }
    cluster.start("r1", "r2")
    await eventually(lambda: all_see(cluster, 2), what="both replicas see each other")
    room = "room-fenced-01"
    async with httpx.AsyncClient(base_url=cluster.replicas["r1"].url, timeout=60) as http:
        assert (await http.post("/apply", json=room_spec(room, entities=1))).status_code in (200, 202)
    await eventually(lambda: desired(cluster, 1, [room]), what="the room converged")
    owner, epoch = (await cluster.holders())[room]
    other = "r2" if owner == "r1" else "r1"
    paused = cluster.replicas[owner]

    async with server_client(cluster) as server, httpx.AsyncClient(base_url=paused.url, timeout=60) as http:
        applying = asyncio.create_task(http.post("/apply", json=room_spec(room, version=2, entities=40)))

        async def writing() -> bool:
            state = (await server.get(f"/room/{room}/state")).json()
            return len(state["entities"]) > 2

        await eventually(writing, what="the owner's run of v2 writing")
        paused.process.send_signal(signal.SIGSTOP)
        try:

            async def moved() -> bool:
                holder = (await cluster.holders()).get(room)
                return holder is not None and holder[0] == other

            await eventually(moved, what="the lease taken by the other replica")
            await eventually(lambda: desired(cluster, 2, [room]), what="the new owner finished v2")
        finally:
            paused.process.send_signal(signal.SIGCONT)
        applying.cancel()

        # Back from the pause, either its run's next write carries the old epoch and is refused (by the
        # room server or its store check), or its next renewal finds the lease gone first and cancels the
        # run: the room is dropped there either way, and nothing it wrote afterwards stayed.
        async def noticed() -> float:
            fenced = await paused.metric("room_operator_fenced_writes")
            return fenced + await paused.metric("room_operator_leases_lost")

        await eventually(noticed, what="the paused replica fenced out")
        await eventually(lambda: cluster.live_replicas(owner), what="the paused replica is back")
        await eventually(lambda: desired(cluster, 2, [room]), what="v2 still desired, no run left open")
        state = (await server.get(f"/room/{room}/state")).json()
        assert sorted(entity["id"] for entity in state["entities"]) == sorted(
            f"E-agent-{i}" for i in range(40)
        )
        _, new_epoch = (await cluster.holders())[room]
        assert new_epoch > epoch


def test_a_second_operator_on_one_sqlite_store_refuses_to_start(tmp_path: Path) -> None:
    handle = RoomServerHandle(
        url="http://127.0.0.1:9", token="t", admin_token="a", data_dir=tmp_path, app=None
    )
    store = tmp_path / "operator.db"
    with roomop_serve(handle, store, free_port()) as first:
        env = {
            **os.environ,
            "ROOMOP_STORE__URL": f"sqlite:///{store}",
            "ROOMOP_API__PORT": str(free_port()),
            "ROOMOP_ROOM_SERVER__BASE_URL": handle.url,
        }
        second = subprocess.run(
            [str(Path(sys.executable).parent / "roomop"), "serve"], env=env, capture_output=True, timeout=60
        )
        assert second.returncode != 0
        message = second.stdout.decode() + second.stderr.decode()
        assert f"pid {first.pid}" in message
        assert "PostgreSQL" in message
