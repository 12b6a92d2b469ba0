"""Operator service benchmarks: fleets converged from empty, steady-state cost, drift healing, `/status`.

The room server and the operator each run in their own process (`roomserver serve`, `roomop serve`,
SQLite stores in a temp folder), so CPU and memory are each process's own. Every setting is the default
(write limit 500 requests/s, loop interval 60 s, room-server events followed). Fleets: 1,000 rooms of 20
entities + 5 seeded artifacts (`BENCH_OPERATOR_ROOMS`), then 10,000 rooms of 20 entities
(`BENCH_OPERATOR_LARGE_ROOMS`, 0 skips it). The physical bound is the disk's fsync rate, measured first.
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

import aiohttp
import httpx
import psutil

ROOMS = int(os.environ.get("BENCH_OPERATOR_ROOMS", "1000"))
LARGE_ROOMS = int(os.environ.get("BENCH_OPERATOR_LARGE_ROOMS", "10000"))
ENTITIES, ARTIFACTS = 20, 5
STEADY_SECONDS = float(os.environ.get("BENCH_OPERATOR_STEADY_SECONDS", "60"))
DRIFT_SAMPLES = 10
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
def _services(tmp: Path) -> Iterator[tuple[str, str, psutil.Process, psutil.Process]]:
    server_port, operator_port = _free_port(), _free_port()
    (tmp / "operator").mkdir(exist_ok=True)
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
        "ROOMOP_STORE__URL": f"sqlite:///{tmp / 'operator' / 'operator.db'}",  # seeds outside its folder
        "ROOMOP_SEEDS__ROOTS": json.dumps([str(tmp / "seeds")]),
        "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
        "ROOMOP_LOGGING__LEVEL": "warning",
    }
    roomop = Path(sys.executable).parent / "roomop"
    operator = subprocess.Popen(
        [str(roomop), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_up(server_url, server)
        _wait_until_up(operator_url, operator)
        yield server_url, operator_url, psutil.Process(operator.pid), psutil.Process(server.pid)
    finally:
        for process in (operator, server):
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _spec(index: int, *, artifacts: int = ARTIFACTS) -> dict[str, Any]:
    return {
        "metadata": {"name": f"bench-{index}", "version": 1},
        "spec": {
            "roomId": f"room-bench-{index:05d}",
            "entities": [{"id": f"E-agent-{n:02d}", "kind": "agent"} for n in range(ENTITIES)],
            "artifacts": [
                {"name": f"doc-{n}", "type": "document", "workspace": "shared", "seedFrom": f"doc-{n}.md"}
                for n in range(artifacts)
            ],
        },
    }


def _fsync_rate(folder: Path, seconds: float = 3.0) -> float:
    """Small appends, each fsynced, a second: what one commit at a time can reach on this disk."""
    path, count = folder / "fsync.probe", 0
    with path.open("ab") as sink:
        started = time.perf_counter()
        while time.perf_counter() - started < seconds:
            sink.write(b"x" * 512)
            sink.flush()
            os.fsync(sink.fileno())
            count += 1
    path.unlink()
    return count / (time.perf_counter() - started)


async def _server_requests(http: httpx.AsyncClient) -> float:
    return sum(float(value) for value in SERVER_REQUESTS.findall((await http.get("/metrics")).text))


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _peak_rss_mib(process: psutil.Process) -> float:
    for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return process.memory_info().rss / 2**20


async def _converge(http: httpx.AsyncClient, rooms: int, *, artifacts: int) -> tuple[float, int]:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(rooms):
        queue.put_nowait(index)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while not queue.empty():
            answer = await http.post("/apply", json=_spec(queue.get_nowait(), artifacts=artifacts))
            if answer.status_code != 200 or not answer.json().get("converged"):
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(32)))
    return time.perf_counter() - started, failures


async def _status_latency(url: str, path: str) -> list[float]:
    """Seconds per `GET path` under STATUS_CLIENTS concurrent clients. The clients are aiohttp's: httpx's
    pool under 16 concurrent requests added tens to hundreds of milliseconds of its own to the tail (p99
    121 ms against aiohttp's 7.7 ms for the same server, 2026-12-03)."""
    samples: list[float] = []
    connector = aiohttp.TCPConnector(limit=STATUS_CLIENTS)
    async with aiohttp.ClientSession(url, connector=connector) as session:

        async def client() -> None:
            for _ in range(STATUS_REQUESTS):
                started = time.perf_counter()
                async with session.get(path) as answer:
                    await answer.read()
                samples.append(time.perf_counter() - started)
                assert answer.status == 200

        await asyncio.gather(*(client() for _ in range(STATUS_CLIENTS)))
    return sorted(samples)


def _percentile(samples: list[float], fraction: float) -> float:
    return samples[min(len(samples) - 1, int(len(samples) * fraction))] * 1000


async def _drift(server: httpx.AsyncClient, rooms: int) -> list[float]:
    """Seconds from removing an entity on the room server to the operator declaring it again."""
    samples: list[float] = []
    for sample in range(DRIFT_SAMPLES):
        room = f"room-bench-{sample * max(1, rooms // DRIFT_SAMPLES):05d}"
        started = time.perf_counter()
        assert (await server.delete(f"/room/{room}/entities/E-agent-00")).status_code == 204
        while not any(
            e["id"] == "E-agent-00" for e in (await server.get(f"/room/{room}/state")).json()["entities"]
        ):
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{room}: drift not healed in 60 s")
            await asyncio.sleep(0.02)
        samples.append(time.perf_counter() - started)
    return sorted(samples)


async def _steady(http: httpx.AsyncClient, processes: list[psutil.Process]) -> tuple[float, float]:
    """CPU of the operator and the room server together (% of one core) and requests/s between them."""
    await asyncio.sleep(5)  # let the event-triggered follow-up runs of the converge settle
    for process in processes:
        process.cpu_percent(None)
    before, started = await _server_requests(http), time.perf_counter()
    await asyncio.sleep(STEADY_SECONDS)
    cpu = sum(process.cpu_percent(None) for process in processes)
    return cpu, (await _server_requests(http) - before) / (time.perf_counter() - started)


async def _fleet(
    operator_url: str, server_url: str, processes: list[psutil.Process], *, rooms: int, artifacts: int
) -> list[str]:
    operator = processes[0]
    limits = httpx.Limits(max_connections=64)
    async with (
        httpx.AsyncClient(base_url=operator_url, timeout=300, limits=limits) as http,
        httpx.AsyncClient(base_url=server_url, timeout=60) as server,
    ):
        cpu_before = [_cpu_seconds(process) for process in processes]
        converge_seconds, failures = await _converge(http, rooms, artifacts=artifacts)
        converge_cpu = [_cpu_seconds(p) - before for p, before in zip(processes, cpu_before, strict=True)]
        converge_load = os.getloadavg()[0]
        converge_requests = await _server_requests(http)
        peak = _peak_rss_mib(operator)
        cpu, rate = await _steady(http, processes)
        drift = await _drift(server, rooms)
        first_page = len((await http.get("/status")).json()["rooms"])
        status = await _status_latency(operator_url, "/status")
        one_room = await _status_latency(operator_url, "/status/rooms/room-bench-00000")
        stalled, cursor = 0, None
        while True:
            page = (
                await http.get(
                    "/status", params={"limit": 1000, "cursor": cursor} if cursor else {"limit": 1000}
                )
            ).json()
            stalled += sum(1 for room in page["rooms"] if room["cyclesSinceConverged"])
            if (cursor := page["nextCursor"]) is None:
                break
    shape = f"{ENTITIES} entities" + (f" + {artifacts} artifacts" if artifacts else "")
    clients = f"{STATUS_CLIENTS} concurrent clients"
    return [
        f"| rooms converged from empty ({shape} each) | {rooms - failures:,} of {rooms:,} |",
        f"| converge time | {converge_seconds:.1f} s ({rooms / converge_seconds:.1f} rooms/s) |",
        f"| room-server requests during converge | {converge_requests:,.0f} "
        f"({converge_requests / rooms:.1f}/room) |",
        f"| CPU during converge: operator / room server (load average at the end) | {converge_cpu[0]:.0f} s"
        f" ({converge_cpu[0] / rooms * 1000:.0f} ms/room) / {converge_cpu[1]:.0f} s ({converge_load:.1f}) |",
        f"| operator peak RSS | {peak:.0f} MiB |",
        f"| steady state, {rooms:,} converged rooms: operator + room server CPU | {cpu:.0f} % of one core |",
        f"| steady state: requests/s to the room server | {rate:.1f} (one state read per room per 60 s: "
        f"{rooms / 60:.1f}) |",
        f"| drift (an entity removed on the room server) healed, median / max of {DRIFT_SAMPLES} | "
        f"{_percentile(drift, 0.5) / 1000:.2f} / {drift[-1]:.2f} s |",
        f"| rooms not converged at the end | {stalled} |",
        f"| `GET /status` first page ({first_page} of {rooms:,} rooms) p50 / p99, {clients} | "
        f"{_percentile(status, 0.5):.1f} / {_percentile(status, 0.99):.1f} ms |",
        f"| `GET /status/rooms/{{id}}` p50 / p99, {clients} | "
        f"{_percentile(one_room, 0.5):.1f} / {_percentile(one_room, 0.99):.1f} ms |",
    ]


def _run_fleet(root: Path, name: str, *, rooms: int, artifacts: int) -> list[str]:
    tmp = root / name
    (tmp / "seeds").mkdir(parents=True)
    for n in range(ARTIFACTS):
        (tmp / "seeds" / f"doc-{n}.md").write_text(f"# Document {n}\n" + "lorem ipsum\n" * 200)
    with _services(tmp) as (server_url, operator_url, operator, server):
        rows = asyncio.run(
            _fleet(operator_url, server_url, [operator, server], rooms=rooms, artifacts=artifacts)
        )
    print(*rows, sep="\n", flush=True)
    return rows


def run() -> str:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        fsyncs = _fsync_rate(root)
        rows = _run_fleet(root, "small", rooms=ROOMS, artifacts=ARTIFACTS)
        if LARGE_ROOMS:
            rows += _run_fleet(root, "large", rooms=LARGE_ROOMS, artifacts=0)
    bound = (
        f"The disk takes {fsyncs:,.0f} fsyncs a second one at a time: a write path of one commit per"
        f" request would need {ROOMS * (2 + ARTIFACTS) / fsyncs:.0f} s for the {ROOMS:,}-room fleet's"
        f" {ROOMS * (2 + ARTIFACTS):,} writes (a batch and 5 uploads per room, the manager riding in the"
        " batch); the room server's group commit shares one fsync between the writes in flight."
    )
    return "\n".join(
        [
            "## Operator service",
            "",
            __doc__.split("\n\n")[1].replace("\n", " "),
            "",
            bound,
            "",
            "| measure | value |",
            "|---|---|",
            *rows,
        ]
    )


if __name__ == "__main__":
    print(run())
