"""Room server benchmarks: 1 GiB artifact upload/download against a plain file copy on the same disk, the
server's peak RSS while streaming, `GET /room/{id}/state` latency for 1,000 entities + 1,000 artifacts
(full and `304`), and the write path: the disk's commit rate (the physical bound: one `synchronous=FULL`
SQLite commit after another), the storage's writes and commits per second under 1, 16 and 64 concurrent
writers (group commit), the same over HTTP, and the batch endpoint's throughput.

The server runs as its own process (`python -m roomserver serve`, data in a temp folder on the same disk as
the copy); its RSS is sampled with psutil every 10 ms. `BENCH_ROOMSERVER_BYTES` shrinks the artifact.
To measure another version of the server (say, before a change), put its `src` first on `PYTHONPATH`:
the parts it lacks (commit counts, the batch endpoint) are reported as such.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import psutil
from tests.support.roomserver import RoomServerProcess, start_roomserver_process

from roomcontract.batch import BATCH_FEATURE
from roomserver.domain.entities import Entity
from roomserver.storage import repository
from roomserver.storage.database import Database

BIG = int(os.environ.get("BENCH_ROOMSERVER_BYTES", 1 << 30))
ROOM_SIZE = 1_000
STATE_READS = 300
MIB = 1 << 20
WRITERS = (1, 16, 64)
RATE_SECONDS = float(os.environ.get("BENCH_ROOMSERVER_RATE_SECONDS", 3))
BATCH_ITEMS = 100


class PeakRss:
    """Samples a process's resident set size in a thread; `peak` is the largest seen."""

    def __init__(self, pid: int):
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._process.memory_info().rss)

    @contextmanager
    def watching(self) -> Iterator[PeakRss]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _write_random(path: Path, size: int) -> None:
    with path.open("wb") as out:
        for offset in range(0, size, 8 * MIB):
            out.write(os.urandom(min(8 * MIB, size - offset)))


def _copy_with_fsync(source: Path, target: Path) -> None:
    shutil.copyfile(source, target)
    with target.open("rb+") as copied:
        os.fsync(copied.fileno())


CURL = shutil.which("curl")


def _upload(server: RoomServerProcess, source: Path) -> None:
    url, auth = f"{server.url}/rooms/room-bench-01/artifacts", f"Bearer {server.token}"
    spec = json.dumps({"name": "big.bin", "type": "binary"})
    if CURL:
        command = [CURL, "-sSf", "-o", os.devnull, "-H", f"Authorization: {auth}", "-F", f"spec={spec}"]
        subprocess.run([*command, "-F", f"data=@{source}", url], check=True)
        return
    with source.open("rb") as data, httpx.Client(timeout=600) as client:
        files = {"spec": (None, spec), "data": ("big.bin", data)}
        client.post(url, files=files, headers={"Authorization": auth}).raise_for_status()


def _download(server: RoomServerProcess, target: Path) -> None:
    url, auth = f"{server.url}/rooms/room-bench-01/artifacts/big.bin", f"Bearer {server.token}"
    if CURL:
        subprocess.run([CURL, "-sSf", "-o", str(target), "-H", f"Authorization: {auth}", url], check=True)
    else:
        with (
            httpx.stream("GET", url, headers={"Authorization": auth}, timeout=600) as answer,
            target.open("wb") as out,
        ):
            answer.raise_for_status()
            for chunk in answer.iter_raw(MIB):
                out.write(chunk)
    with target.open("rb+") as written:
        os.fsync(written.fileno())


def _throughput(server: RoomServerProcess, work: Path) -> tuple[list[str], int]:
    source, copy, downloaded = work / "source.bin", work / "copy.bin", work / "downloaded.bin"
    _write_random(source, BIG)
    copy_s = _timed(lambda: _copy_with_fsync(source, copy))
    copy.unlink()
    rss = PeakRss(server.process.pid)
    baseline = rss.peak
    with rss.watching():
        upload_s = _timed(lambda: _upload(server, source))
        download_s = _timed(lambda: _download(server, downloaded))
    source.unlink()
    downloaded.unlink()
    mib = BIG / MIB
    rows = [
        f"| plain file copy + fsync | {copy_s:.2f} s | {mib / copy_s:.0f} MiB/s |",
        f"| upload (multipart POST, hashed, fsynced) | {upload_s:.2f} s | {mib / upload_s:.0f} MiB/s |",
        f"| download (GET, written + fsynced) | {download_s:.2f} s | {mib / download_s:.0f} MiB/s |",
    ]
    return [
        *rows,
        "",
        f"Server RSS: {baseline / MIB:.0f} MiB idle, **{rss.peak / MIB:.0f} MiB peak** (target < 100 MiB).",
    ], rss.peak


async def _populate(server: RoomServerProcess) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as client:

        async def join(i: int) -> None:
            async with limit:
                body = {"entityId": f"E-member-{i:04d}", "kind": "agent", "capabilities": ["read_artifacts"]}
                (await client.post("/room/room-bench-01/join", json=body)).raise_for_status()

        async def seed(i: int) -> None:
            spec = {"name": f"artifact-{i:04d}", "type": "document", "workspace": "shared", "tags": ["bench"]}
            files = {"spec": (None, json.dumps(spec)), "data": (f"a{i}", f"content {i}".encode() * 64)}
            async with limit:
                (await client.post("/rooms/room-bench-01/artifacts", files=files)).raise_for_status()

        await asyncio.gather(*(join(i) for i in range(ROOM_SIZE)), *(seed(i) for i in range(ROOM_SIZE)))


def _state_latency(server: RoomServerProcess) -> list[str]:
    asyncio.run(_populate(server))
    headers = {"Authorization": f"Bearer {server.token}"}
    timings = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        size = len(client.get("/room/room-bench-01/state").content)
        for _ in range(STATE_READS):
            start = time.perf_counter()
            answer = client.get("/room/room-bench-01/state")
            timings.append((time.perf_counter() - start) * 1000)
            answer.raise_for_status()
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(len(timings) * 0.99) - 1]
    return [
        f"`GET /room/room-bench-01/state`, {ROOM_SIZE:,} entities + {ROOM_SIZE:,} artifacts"
        f" ({size / 1024:.0f} KiB JSON),",
        f"{STATE_READS} sequential reads over HTTP: **p50 {p50:.1f} ms, p99 {p99:.1f} ms** (target < 50 ms).",
    ]


def _commit_bound(folder: Path) -> float:
    """Commits per second of one SQLite connection, WAL and `synchronous=FULL`, one row per commit."""
    conn = sqlite3.connect(folder / "bound.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
    commits, start = 0, time.perf_counter()
    while time.perf_counter() - start < RATE_SECONDS:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('x')")
        conn.execute("COMMIT")
        commits += 1
    conn.close()
    return commits / (time.perf_counter() - start)


async def _rate(workers: int, step: Callable[[int, int], Awaitable[int]]) -> float:
    """Writes per second of `workers` concurrent loops calling `step(worker, n)` (it answers how many
    writes it made) for `RATE_SECONDS`."""
    loop = asyncio.get_running_loop()
    writes, start = 0, loop.time()

    async def worker(w: int) -> None:
        nonlocal writes
        n = 0
        while loop.time() - start < RATE_SECONDS:
            made = await step(w, n)  # (not `writes += await ...`: that reads `writes` before the await)
            writes += made
            n += 1

    await asyncio.gather(*(worker(w) for w in range(workers)))
    return writes / (loop.time() - start)


async def _storage_rates(folder: Path, writers: int) -> tuple[float, float | None]:
    """Entity writes and commits per second through `Database.run` with `writers` concurrent callers
    (commits None when the server measured has no commit counter: one commit per write)."""
    database = Database(folder / f"storage-{writers}.db")
    await database.open()
    first, start = getattr(database, "commits", 0), time.perf_counter()

    async def write(w: int, n: int) -> int:
        await database.run(repository.put_entity, "room-bench-rates", Entity(f"E-w{w}-{n}", "agent"))
        return 1

    writes = await _rate(writers, write)
    elapsed = time.perf_counter() - start
    commits = getattr(database, "commits", None)
    await database.close()
    return writes, None if commits is None else (commits - first) / elapsed


async def _http_rates(server: RoomServerProcess, writers: int) -> float:
    """`PUT /room/{id}/entities/{eid}` answered per second with `writers` concurrent clients (aiohttp: at
    64 clients httpx itself takes a whole core here)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    connector = aiohttp.TCPConnector(limit=writers)
    async with aiohttp.ClientSession(server.url, headers=headers, connector=connector) as client:

        async def write(w: int, n: int) -> int:
            path = f"/room/room-bench-http-{w % 8}/entities/E-h{writers}-{w}-{n}"
            async with client.put(path, json={"kind": "agent"}) as answer:
                answer.raise_for_status()
            return 1

        return await _rate(writers, write)


async def _batch_rate(server: RoomServerProcess, concurrent: int) -> float | None:
    """Entities declared per second through `POST /room/{id}/batch` (`BATCH_ITEMS` items a request,
    `concurrent` requests in flight, one room each); None when the server has no batch endpoint."""
    headers = {"Authorization": f"Bearer {server.token}"}
    async with aiohttp.ClientSession(server.url, headers=headers) as client:
        async with client.get("/auth/whoami") as who:
            if BATCH_FEATURE not in (await who.json()).get("features", []):
                return None

        async def send(c: int, n: int) -> int:
            items = [
                {"op": "putEntity", "entity": {"entityId": f"E-b{c}-{n}-{i}", "kind": "agent"}}
                for i in range(BATCH_ITEMS)
            ]
            async with client.post(f"/room/room-bench-batch-{c:02d}/batch", json={"items": items}) as answer:
                answer.raise_for_status()
            return BATCH_ITEMS

        return await _rate(concurrent, send)


def _write_path(server: RoomServerProcess, work: Path) -> list[str]:
    bound = _commit_bound(work)
    rows = []
    for writers in WRITERS:
        writes, commits = asyncio.run(_storage_rates(work, writers))
        http = asyncio.run(_http_rates(server, writers))
        shown = "= writes (no group commit)" if commits is None else f"{commits:,.0f}"
        rows.append(f"| {writers} | {writes:,.0f} | {shown} | {writes / bound:.1f}x | {http:,.0f} |")
    batches = [(c, asyncio.run(_batch_rate(server, c))) for c in (1, 4)]
    batch_rows = [
        f"| {c} | {'n/a (no batch endpoint)' if rate is None else f'{rate:,.0f} entities/s'} |"
        for c, rate in batches
    ]
    return [
        f"Write path ({RATE_SECONDS:g} s per measure). **Physical bound: {bound:,.0f} commits/s** (one",
        "SQLite commit after another on this disk, WAL, `synchronous=FULL`). Storage: entity upserts through",
        "`Database.run` with N concurrent callers, in one process; HTTP: `PUT /room/{id}/entities/{eid}`",
        "from N concurrent aiohttp clients against the server process (client and server share the 2 cores).",
        "",
        "| writers | storage writes/s | storage commits/s | writes/s vs the bound | HTTP writes/s |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Batch endpoint, {BATCH_ITEMS} `putEntity` items per request (one room per sender):",
        "",
        "| requests in flight | entities declared |",
        "|---|---|",
        *batch_rows,
    ]


def _not_modified_latency(server: RoomServerProcess) -> str:
    headers = {"Authorization": f"Bearer {server.token}"}
    timings = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
        etag = client.get("/room/room-bench-01/state").headers["ETag"]
        for _ in range(STATE_READS):
            start = time.perf_counter()
            answer = client.get("/room/room-bench-01/state", headers={"If-None-Match": etag})
            timings.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 304
    timings.sort()
    p50, p99 = statistics.median(timings), timings[int(len(timings) * 0.99) - 1]
    conditional = asyncio.run(_server_cpu(server, "/room/room-bench-01/state", {"If-None-Match": etag}))
    health = asyncio.run(_server_cpu(server, "/health", {}))
    return (
        f"The same with a current `If-None-Match` (`304`): **p50 {p50:.2f} ms, p99 {p99:.2f} ms**; server CPU"
        f" per `304` (8 clients in flight): **{conditional:.0f} µs** (`GET /health`: {health:.0f} µs)."
    )


async def _server_cpu(server: RoomServerProcess, path: str, extra: dict[str, str]) -> float:
    """The server process's CPU time per `GET path`, in µs, with 8 aiohttp clients for `RATE_SECONDS`."""
    headers = {"Authorization": f"Bearer {server.token}", **extra}
    process = psutil.Process(server.process.pid)
    async with aiohttp.ClientSession(server.url, headers=headers) as client:

        async def read(_w: int, _n: int) -> int:
            async with client.get(path) as answer:
                await answer.read()
            return 1

        before, start = process.cpu_times(), time.perf_counter()
        rate = await _rate(8, read)
        after, elapsed = process.cpu_times(), time.perf_counter() - start
    used = after.user + after.system - before.user - before.system
    return used / (rate * elapsed) * 1e6


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-roomserver-", dir=os.environ.get("BENCH_TMP")) as folder:
        work = Path(folder)
        server = start_roomserver_process(work / "data", extra_args=("--max-upload-bytes", str(BIG + MIB)))
        try:
            throughput, _ = _throughput(server, work)
            latency = _state_latency(server)
            not_modified = _not_modified_latency(server)
            write_path = _write_path(server, work)
        finally:
            server.stop()
    return "\n".join(
        [
            "## Room server",
            "",
            f"A {BIG / (1 << 30):g} GiB artifact through the server (own process, same disk as the copy;"
            f" client: {'curl' if CURL else 'httpx'}):",
            "",
            "| operation | time | throughput |",
            "|---|---|---|",
            *throughput,
            "",
            *latency,
            not_modified,
            "",
            *write_path,
        ]
    )
