"""Load: 200 concurrent REST clients (no hub) on the room server, and `/status` callers on the operator,
both servers as processes, the clients in a third process (`load_clients.py`), all on 127.0.0.1.

Each client declares its own entity, then, round after round, uploads an artifact, reads it back and
reads the room's state, while others poll the operator's `/status`. Asserted: no error and no failed
request (an idempotent request whose reused connection the server closed as it was sent, the keep-alive
race, is sent again once, as standard clients do, and counted: at most 1 % of the requests), and no
unbounded memory growth (each server's RSS after the last round within a generous
bound of its RSS before the first). Latency percentiles and request rates are printed (`-s`) for
`docs/reliability.md`; speed is not asserted (goals are measured in `bench/`). Short: the declaring
round only (the uploads run in the hostile and durability tests); `make soak`: 40 rounds more.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
from pathlib import Path

import psutil
import pytest

from tests.suites.stack import SHARED_LOOP, Stack

CLIENTS = 200
ROOMS = 10
MIB = 1024 * 1024
ROOT = Path(__file__).parents[2]  # `-m tests.suites.load_clients` is found from the repository's root
GROWTH_BOUND = 150 * MIB  # generous: caches, SQLite page cache and the allocator's arenas settle first
RUNS = [pytest.param(1, id="short"), pytest.param(41, id="soak", marks=pytest.mark.soak)]

pytestmark = [SHARED_LOOP, pytest.mark.slow]


def figures(latencies: dict[str, list[float]]) -> dict[str, str]:
    out = {}
    for kind, values in sorted(latencies.items()):
        q = statistics.quantiles(values, n=100)
        out[kind] = (
            f"n={len(values)} p50={q[49] * 1000:.0f}ms p95={q[94] * 1000:.0f}ms p99={q[98] * 1000:.0f}ms"
        )
    return out


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("rounds", RUNS)
async def test_200_concurrent_clients_get_no_error_and_memory_stays_bounded(
    running: Stack, rounds: int
) -> None:
    stack = running
    assert stack.roomserver is not None
    assert stack.operator is not None
    config = {
        "roomserver": stack.roomserver.url,
        "operator": stack.operator_url,
        "token": stack.token,
        "clients": CLIENTS,
        "rooms": ROOMS,
        "rounds": rounds,
        "run": f"load{rounds}",  # this run's rooms of the shared stack
        "watchers": 10,
    }
    before = rss(stack.roomserver.process.pid), rss(stack.operator.pid)
    clients = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.suites.load_clients",
        json.dumps(config),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    output, _ = await clients.communicate()
    assert clients.returncode == 0, output[-2000:]
    after = rss(stack.roomserver.process.pid), rss(stack.operator.pid)
    result = json.loads(output)
    requests = sum(len(v) for v in result["latencies"].values())
    elapsed = result["elapsed"]
    print(
        f"\nload: {CLIENTS} clients (in another process) x {rounds} rounds, {requests} requests"
        f" in {elapsed:.1f} s"
        f" ({requests / elapsed:.0f}/s), {len(result['failures'])} failures,"
        f" {len(result['retried'])} sent again; {figures(result['latencies'])};"
        f" RSS room server {before[0] / MIB:.0f} -> {after[0] / MIB:.0f} MiB,"
        f" operator {before[1] / MIB:.0f} -> {after[1] / MIB:.0f} MiB"
    )
    assert result["failures"] == []
    assert len(result["retried"]) <= max(1, requests // 100), result["retried"]
    assert after[0] - before[0] < GROWTH_BOUND
    assert after[1] - before[1] < GROWTH_BOUND
