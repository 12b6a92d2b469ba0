"""Operator service benchmarks: 1,000 rooms converged from empty, steady-state cost, `/status` latency.

The room server and the operator each run in their own process (`roomserver serve`, `roomop serve`,
SQLite stores in a temp folder), so CPU and memory are the operator's own. Writes are rate-limited at
5,000/s (the default 50/s would dominate the converge time); the loop runs at its default 2 s ± 10 %.
Set `BENCH_OPERATOR_ROOMS` to run a smaller fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOMS = int(os.environ.get("BENCH_OPERATOR_ROOMS", "1000"))
ENTITIES, ARTIFACTS = 20, 5
STEADY_SECONDS = float(os.environ.get("BENCH_OPERATOR_STEADY_SECONDS", "20"))
STATUS_CLIENTS, STATUS_REQUESTS = 16, 25
SERVER_REQUESTS = re.compile(
    r'^room_operator_room_server_requests_total\{outcome="[^"]+"\} ([0-9.e+]+)$', re.M
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=1).status_code in (200, 503):
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextlib.contextmanager
def _services(tmp: Path) -> Iterator[tuple[str, str, psutil.Process]]:
    server_port, operator_port = _free_port(), _free_port()
    server_url, operator_url = f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{operator_port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "roomserver", "serve", "--port", str(server_port), "--data", str(tmp / "rs"),
         "--insecure-no-auth"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {
        **os.environ,
        "ROOMOP_ROOM_SERVER__BASE_URL": server_url,
        "ROOMOP_API__PORT": str(operator_port),
        "ROOMOP_STORE__URL": f"sqlite:///{tmp / 'operator.db'}",
        "ROOMOP_SEEDS__ROOTS": json.dumps([str(tmp / "seeds")]),
        "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
        "ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "5000",
        "ROOMOP_LOGGING__LEVEL": "warning",
    }
    roomop = Path(sys.executable).parent / "roomop"
    operator = subprocess.Popen(
        [str(roomop), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_up(server_url, server)
        _wait_until_up(operator_url, operator)
        yield server_url, operator_url, psutil.Process(operator.pid)
    finally:
        for process in (operator, server):
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
            "roomId": f"room-bench-{index:05d}",
            "entities": [{"id": f"E-agent-{n:02d}", "kind": "agent"} for n in range(ENTITIES)],
            "artifacts": [
                {"name": f"doc-{n}", "type": "document", "workspace": "shared", "seedFrom": f"doc-{n}.md"}
                for n in range(ARTIFACTS)
            ],
        },
    }


async def _server_requests(http: httpx.AsyncClient) -> float:
    return sum(float(value) for value in SERVER_REQUESTS.findall((await http.get("/metrics")).text))


def _peak_rss_mib(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return process.memory_info().rss / 2**20


async def _converge(http: httpx.AsyncClient) -> tuple[float, int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(ROOMS):
        queue.put_nowait(index)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            answer = await http.post("/apply", json=_spec(queue.get_nowait()))
            if answer.status_code != 200 or not answer.json().get("converged"):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
    return time.perf_counter() - started, failures


async def _status_latency(http: httpx.AsyncClient, path: str) -> list[float]:
    samples: list[float] = []

    async def client() -> None:
        for _ in range(STATUS_REQUESTS):
            started = time.perf_counter()
            answer = await http.get(path)
            samples.append(time.perf_counter() - started)
            assert answer.status_code == 200

    await asyncio.gather(*(client() for _ in range(STATUS_CLIENTS)))
    return sorted(samples)


def _percentile(samples: list[float], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] * 1000


async def _measure(operator_url: str, process: psutil.Process) -> list[str]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=operator_url, timeout=300, limits=limits) as http:
        converge_seconds, failures = await _converge(http)
        converge_requests = await _server_requests(http)
        peak = _peak_rss_mib(process)
        await asyncio.sleep(5)  # let the event-triggered follow-up runs of the converge settle
        process.cpu_percent(None)
        before, started = await _server_requests(http), time.perf_counter()
        await asyncio.sleep(STEADY_SECONDS)
        cpu = process.cpu_percent(None)
        rate = (await _server_requests(http) - before) / (time.perf_counter() - started)
        status = await _status_latency(http, "/status")
        one_room = await _status_latency(http, "/status/rooms/bench-room-00000")
        stalled = sum(
            1 for room in (await http.get("/status")).json()["rooms"] if room["cyclesSinceConverged"]
        )
    shape = f"{ENTITIES} entities + {ARTIFACTS} artifacts each"
    clients = f"{STATUS_CLIENTS} concurrent clients"
    return [
        "| measure | value |",
        "|---|---|",
        f"| rooms converged from empty ({shape}) | {ROOMS - failures} of {ROOMS} |",
        f"| converge time | {converge_seconds:.1f} s ({ROOMS / converge_seconds:.1f} rooms/s) |",
        f"| room-server requests during converge | {converge_requests:,.0f} "
        f"({converge_requests / ROOMS:.1f}/room) |",
        f"| operator peak RSS | {peak:.0f} MiB |",
        f"| steady state, {ROOMS} converged rooms, 2 s interval: operator CPU | {cpu:.0f} % of one core |",
        f"| steady state: requests/s to the room server | {rate:.0f} (one state read per room per interval: "
        f"{ROOMS / 2:.0f}) |",
        f"| rooms not converged at the end | {stalled} |",
        f"| `GET /status` ({ROOMS} rooms) p50 / p99, {clients} | "
        f"{_percentile(status, 0.5):.1f} / {_percentile(status, 0.99):.1f} ms |",
        f"| `GET /status/rooms/{{id}}` p50 / p99, {clients} | "
        f"{_percentile(one_room, 0.5):.1f} / {_percentile(one_room, 0.99):.1f} ms |",
    ]


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "seeds").mkdir()
        for n in range(ARTIFACTS):
            (tmp / "seeds" / f"doc-{n}.md").write_text(f"# Document {n}\n" + "lorem ipsum\n" * 200)
        with _services(tmp) as (_, operator_url, process):
            rows = asyncio.run(_measure(operator_url, process))
    return "\n".join(["## Operator service", "", __doc__.split("\n\n")[1].replace("\n", " "), "", *rows])
