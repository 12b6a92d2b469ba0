"""Load: 200 concurrent REST clients (no hub) on the room server, and `/status` callers on the operator,
both servers as processes, the clients in this one on 127.0.0.1.

Each client declares its own entity, then, round after round, uploads an artifact, reads it back and
reads the room's state, while others poll the operator's `/status`. Asserted: no error and no failed
request, and no unbounded memory growth (each server's RSS after the last round within a generous
bound of its RSS before the first). Latency percentiles and request rates are printed (`-s`) for
`docs/reliability.md`; speed is not asserted (goals are measured in `bench/`). Short: the declaring
round only (the uploads run in the hostile and durability tests); `make soak`: 40 rounds more.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from tests.suites.stack import SHARED_LOOP, Stack
from tests.support.roomserver import upload_artifact

CLIENTS = 200
ROOMS = 10
MIB = 1024 * 1024
GROWTH_BOUND = 150 * MIB  # generous: caches, SQLite page cache and the allocator's arenas settle first
RUNS = [pytest.param(1, id="short"), pytest.param(41, id="soak", marks=pytest.mark.soak)]

pytestmark = [SHARED_LOOP, pytest.mark.slow]


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def call(
        self, kind: str, request: asyncio.Future[httpx.Response] | object, ok: tuple[int, ...]
    ) -> None:
        started = time.perf_counter()
        try:
            answer = await request  # type: ignore[misc]
        except httpx.HTTPError as exc:
            self.failures.append(f"{kind}: {type(exc).__name__}")
            return
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        if answer.status_code not in ok:
            self.failures.append(f"{kind}: {answer.status_code} {answer.text[:100]}")

    def figures(self) -> dict[str, str]:
        out = {}
        for kind, values in sorted(self.latencies.items()):
            q = statistics.quantiles(values, n=100)
            out[kind] = (
                f"n={len(values)} p50={q[49] * 1000:.0f}ms p95={q[94] * 1000:.0f}ms p99={q[98] * 1000:.0f}ms"
            )
        return out


async def member(rs: httpx.AsyncClient, tally: Tally, client: int, round_: int, *, run: str) -> None:
    """One client's round: the first declares its entity, each later one uploads an artifact to the
    entity's workspace and reads it back; every round reads the room's state."""
    room, entity = f"room-{run}-{client % ROOMS:02d}", f"E-load-{client}"  # this run's rooms of the stack
    if round_ == 0:
        join = rs.post(f"/room/{room}/join", json={"entityId": entity, "kind": "agent"})
        await tally.call("join", join, (201,))
    else:
        name = f"c{client}-r{round_}"
        await tally.call("upload", upload_artifact(rs, room, name, b"x" * 2048, entity=entity), (201,))
        download = rs.get(
            f"/rooms/{room}/entities/{entity}/artifacts/{name}", headers={"X-Entity-Id": entity}
        )
        await tally.call("download", download, (200,))
    await tally.call("state", rs.get(f"/room/{room}/state"), (200,))


async def watcher(op: httpx.AsyncClient, tally: Tally, rounds: int) -> None:
    for _ in range(rounds):
        await tally.call("operator /status", op.get("/status"), (200,))


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


@pytest.mark.parametrize("rounds", RUNS)
async def test_200_concurrent_clients_get_no_error_and_memory_stays_bounded(
    running: Stack, rounds: int
) -> None:
    stack = running
    assert stack.roomserver is not None
    assert stack.operator is not None
    # One connection per client; idle ones dropped well before the servers' keep-alive of 5 s, as a client
    # must, or a request sent as the server closes an idle connection fails (the keep-alive race).
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS, keepalive_expiry=2)
    tally = Tally()
    started = time.perf_counter()
    async with (
        stack.room_server(limits=limits, timeout=60) as rs,
        httpx.AsyncClient(base_url=stack.operator_url, timeout=30, limits=limits) as op,
    ):
        memory = [(rss(stack.roomserver.process.pid), rss(stack.operator.pid))]
        for round_ in range(rounds):
            await asyncio.gather(
                *(member(rs, tally, client, round_, run=f"load{rounds}") for client in range(CLIENTS)),
                *(watcher(op, tally, 5) for _ in range(10)),
            )
            memory.append((rss(stack.roomserver.process.pid), rss(stack.operator.pid)))
    elapsed = time.perf_counter() - started
    requests = sum(len(v) for v in tally.latencies.values())
    (rs_first, op_first), (rs_last, op_last) = memory[0], memory[-1]
    print(
        f"\nload: {CLIENTS} clients x {rounds} rounds, {requests} requests in {elapsed:.1f} s"
        f" ({requests / elapsed:.0f}/s), {len(tally.failures)} failures; {tally.figures()};"
        f" RSS room server {rs_first / MIB:.0f} -> {rs_last / MIB:.0f} MiB,"
        f" operator {op_first / MIB:.0f} -> {op_last / MIB:.0f} MiB"
    )
    assert tally.failures == []
    assert rs_last - rs_first < GROWTH_BOUND
    assert op_last - op_first < GROWTH_BOUND
