"""Operator replicas benchmark: a fleet converged from empty by three `roomop serve` replicas on one
PostgreSQL store, and the takeover after one is killed (`kill -9`).

The room server and each replica run in their own process, so CPU and memory are each process's own.
Replicas use the default leases (15 s lease, 10 s renew deadline, 2 s period) and every other default.
Rooms: `BENCH_REPLICA_ROOMS` (10,000 by default) of `BENCH_REPLICA_ENTITIES` entities (5), applied
through the three replicas in turn (32 requests at a time; an apply to a replica that does not own the
room is answered 202 and run by the owner). Converged: every room's revision 1 desired and no run left
open, read from the store. Takeover: from the kill until every room of the killed replica has a live lease
of a survivor (at most the lease time plus one period by design), then until those rooms were run there.
Needs the PostgreSQL server at 127.0.0.1:5432 (database `test`); a schema of its own is dropped after.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bench.bench_operator import _free_port, _peak_rss_mib, _wait_until_up

ROOMS = int(os.environ.get("BENCH_REPLICA_ROOMS", "10000"))
ENTITIES = int(os.environ.get("BENCH_REPLICA_ENTITIES", "5"))
REPLICAS = ("replica-a", "replica-b", "replica-c")
POSTGRES_URLS = ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://root@127.0.0.1:5432/test")


async def _postgres() -> str:
    for url in POSTGRES_URLS:
        engine = create_async_engine(url.replace("postgresql:", "postgresql+asyncpg:"))
        try:
            async with engine.connect() as connection:
                await connection.exec_driver_sql("SELECT 1")
            return url
        except Exception:
            continue
        finally:
            await engine.dispose()
    raise RuntimeError("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")


@contextlib.contextmanager
def _processes(tmp: Path, url: str, schema: str) -> Iterator[tuple[str, dict[str, subprocess.Popen[bytes]]]]:
    server_port = _free_port()
    server_url = f"http://127.0.0.1:{server_port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "roomserver", "serve", "--port", str(server_port), "--data", str(tmp / "rs"),
         "--insecure-no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    replicas: dict[str, subprocess.Popen[bytes]] = {}
    ports: dict[str, int] = {}
    try:
        for name in REPLICAS:
            ports[name] = _free_port()
            env = {
                **os.environ,
                "ROOMOP_ROOM_SERVER__BASE_URL": server_url,
                "ROOMOP_API__PORT": str(ports[name]),
                "ROOMOP_STORE__URL": url,
                "ROOMOP_STORE__SCHEMA_NAME": schema,
                "ROOMOP_DATA_DIR": str(tmp / name),
                "ROOMOP_REPLICAS__REPLICA_ID": name,
                "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
                "ROOMOP_LOGGING__LEVEL": "warning",
            }
            replicas[name] = subprocess.Popen(
                [str(Path(sys.executable).parent / "roomop"), "serve"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        _wait_until_up(server_url, server)
        for name, process in replicas.items():
            _wait_until_up(f"http://127.0.0.1:{ports[name]}", process)
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in REPLICAS}
        yield json.dumps(urls), replicas
    finally:
        for process in (*replicas.values(), server):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _spec(index: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"bench-{index}", "version": 1},
        "spec": {
            "roomId": f"room-replicas-{index:05d}",
            "entities": [{"id": f"E-agent-{n:02d}", "kind": "agent"} for n in range(ENTITIES)],
        },
    }


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(sql), params)).scalar()


async def _converged(engine: AsyncEngine, rooms: int, *, since: float) -> float:
    while True:
        done = await _scalar(engine, "SELECT count(*) FROM rooms WHERE revision >= 1")
        open_runs = await _scalar(engine, "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')")
        if done == rooms and open_runs == 0:
            return time.perf_counter() - since
        await asyncio.sleep(0.5)  # other processes' progress, read from the store


async def _apply(urls: dict[str, str], rooms: int) -> int:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(rooms):
        queue.put_nowait(index)
    clients = [httpx.AsyncClient(base_url=url, timeout=300) for url in urls.values()]
    failures = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while not queue.empty():
            answer = await client.post("/apply", json=_spec(queue.get_nowait()))
            failures += answer.status_code not in (200, 202)

    try:
        await asyncio.gather(*(worker(clients[n % len(clients)]) for n in range(32)))
    finally:
        for client in clients:
            await client.aclose()
    return failures


async def _all_held_by_survivors(engine: AsyncEngine, victim: str) -> None:
    survivors = "SELECT count(*) FROM room_leases WHERE holder <> :h AND expires_at > now()"
    while True:
        if await _scalar(engine, survivors, h=victim) == ROOMS:
            return
        await asyncio.sleep(0.2)  # the survivors' progress, read from the store


def _cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def _measure(url: str, schema: str, tmp: Path) -> list[str]:
    engine = create_async_engine(
        url.replace("postgresql:", "postgresql+asyncpg:"),
        connect_args={"server_settings": {"search_path": schema}},
    )
    try:
        with _processes(tmp, url, schema) as (urls_json, replicas):
            urls: dict[str, str] = json.loads(urls_json)
            cpu = {name: _cpu_seconds(process.pid) for name, process in replicas.items()}
            started = time.perf_counter()
            failures = await _apply(urls, ROOMS)
            accepted = time.perf_counter() - started
            converged = await _converged(engine, ROOMS, since=started)
            used = {name: _cpu_seconds(process.pid) - cpu[name] for name, process in replicas.items()}
            rss = {name: _peak_rss_mib(psutil.Process(process.pid)) for name, process in replicas.items()}
            owned = {
                name: await _scalar(engine, "SELECT count(*) FROM room_leases WHERE holder = :h", h=name)
                for name in REPLICAS
            }
            victim = REPLICAS[0]
            orphans = owned[victim]
            replicas[victim].send_signal(signal.SIGKILL)
            replicas[victim].wait()
            killed = time.perf_counter()
            await _all_held_by_survivors(engine, victim)
            taken = time.perf_counter() - killed
            ran = await _converged(engine, ROOMS, since=killed)
    finally:
        await engine.dispose()
    rows = [
        f"| rooms ({ENTITIES} entities each), over {len(REPLICAS)} replicas | {ROOMS:,} |",
        f"| all applies answered (200 or 202) | {accepted:.1f} s ({failures} failed) |",
        f"| converged from empty | {converged:.1f} s ({ROOMS / converged:.0f} rooms/s) |",
        *(
            f"| {name}: rooms owned, CPU, peak RSS |"
            f" {owned[name]:,}, {used[name]:.1f} s, {rss[name]:.0f} MiB |"
            for name in REPLICAS
        ),
        f"| `kill -9` of {victim} ({orphans:,} rooms): all leases held by survivors | {taken:.1f} s |",
        f"| ... and no run left open | {ran:.1f} s |",
    ]
    return ["| measure | value |", "|---|---|", *rows]


def run() -> str:
    async def main() -> list[str]:
        url = await _postgres()
        schema = f"bench_replicas_{uuid.uuid4().hex[:8]}"
        admin = create_async_engine(
            url.replace("postgresql:", "postgresql+asyncpg:"), isolation_level="AUTOCOMMIT"
        )
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        try:
            with tempfile.TemporaryDirectory() as tmp:
                return await _measure(url, schema, Path(tmp))
        finally:
            async with admin.connect() as connection:
                await connection.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
            await admin.dispose()

    lines = asyncio.run(main())
    return "\n".join(
        [
            "## Operator replicas (PostgreSQL)",
            "",
            "Three `roomop serve` replicas on one PostgreSQL store, default leases (15 s / 10 s / 2 s):",
            "",
            *lines,
        ]
    )


if __name__ == "__main__":
    print(run())
