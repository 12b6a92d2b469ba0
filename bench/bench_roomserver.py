"""Room server benchmarks: 1 GiB artifact upload/download against a plain file copy on the same disk, the
server's peak RSS while streaming, and `GET /room/{id}/state` latency for 1,000 entities + 1,000 artifacts.

The server runs as its own process (`python -m roomserver serve`, data in a temp folder on the same disk as
the copy); its RSS is sampled with psutil every 10 ms. `BENCH_ROOMSERVER_BYTES` shrinks the artifact.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
from tests.support.roomserver import RoomServerProcess, start_roomserver_process

BIG = int(os.environ.get("BENCH_ROOMSERVER_BYTES", 1 << 30))
ROOM_SIZE = 1_000
STATE_READS = 300
MIB = 1 << 20


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


def run() -> str:
    with tempfile.TemporaryDirectory(prefix="bench-roomserver-", dir=os.environ.get("BENCH_TMP")) as folder:
        work = Path(folder)
        server = start_roomserver_process(work / "data", extra_args=("--max-upload-bytes", str(BIG + MIB)))
        try:
            throughput, _ = _throughput(server, work)
            latency = _state_latency(server)
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
        ]
    )
