"""Hub benchmark: N concurrent SignalR connections in one room of a `roomserver serve` child process.

Measures the server's memory per connection (RSS after N joined sessions minus before, over N), the
broadcast fan-out latency (one room message, from the send to the last of the N receipts; p50/p99 over
`BENCH_HUB_ROUNDS` rounds), and the throughput of one room (messages sent back to back by one member,
counted until every connection got the last: receipts per second and messages per second). Clients are
raw WebSocket connections speaking the JSON protocol (`tests/hub/client.py`'s framing) in this process.
`BENCH_HUB_CONNECTIONS` (default 1000) sets N.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from tests.support.roomserver import RoomServerProcess, start_roomserver_process
from websockets.asyncio.client import ClientConnection, connect

RS = "\x1e"
ROOM = "room-bench-hub"


class Member:
    """One connection; `seen` counts the `message` events it received, `arrived` fires at a target count."""

    def __init__(self, ws: ClientConnection, index: int):
        self.ws = ws
        self.index = index
        self.seen = 0
        self.target = 0
        self.arrived = asyncio.Event()
        self.completions: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def read(self) -> None:
        async for data in self.ws:
            assert isinstance(data, str)
            for record in data.split(RS)[:-1]:
                if record.startswith('{"type":1,"target":"message"'):
                    self.seen += 1
                    if self.seen >= self.target:
                        self.arrived.set()
                elif record.startswith('{"type":3'):
                    await self.completions.put(json.loads(record))

    async def invoke(self, invocation_id: str, target: str, *args: Any) -> dict[str, Any]:
        frame = {"type": 1, "invocationId": invocation_id, "target": target, "arguments": list(args)}
        await self.ws.send(json.dumps(frame) + RS)
        return await asyncio.wait_for(self.completions.get(), 120)


async def _connect(server: RoomServerProcess, index: int) -> Member:
    url = server.url.replace("http://", "ws://") + "/room"
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {server.token}"}, max_queue=None)
    await ws.send(json.dumps({"protocol": "json", "version": 1}) + RS)
    assert await ws.recv() == "{}" + RS
    return Member(ws, index)


def _chat(text: str) -> dict[str, Any]:
    return {"from": "E-m0", "type": "chat", "payload": {"text": text}}


async def _measure(server: RoomServerProcess, count: int, rounds: int, burst: int) -> dict[str, float]:
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    members = [await _connect(server, i) for i in range(count)]
    readers = [asyncio.create_task(m.read()) for m in members]
    started = time.perf_counter()
    for chunk in range(0, count, 100):
        joins = [
            m.invoke("j", "Join", ROOM, {"id": f"E-m{m.index}", "kind": "agent"})
            for m in members[chunk : chunk + 100]
        ]
        for completion in await asyncio.gather(*joins):
            assert "error" not in completion, completion
    join_seconds = time.perf_counter() - started
    per_connection = (process.memory_info().rss - before) / count
    sender = members[0]
    latencies = []
    for i in range(rounds):
        for m in members:
            m.target, m.arrived = m.seen + 1, asyncio.Event()
        sent = time.perf_counter()
        await sender.invoke("s", "SendToRoom", ROOM, _chat(f"round {i}"))
        await asyncio.gather(*(m.arrived.wait() for m in members))
        latencies.append((time.perf_counter() - sent) * 1000)
    for m in members:
        m.target, m.arrived = m.seen + burst, asyncio.Event()
    sent = time.perf_counter()
    for i in range(burst):  # back to back, fire-and-forget, as a chatty member sends
        frame = {"type": 1, "target": "SendToRoom", "arguments": [ROOM, _chat(f"burst {i}")]}
        await sender.ws.send(json.dumps(frame) + RS)
    await asyncio.wait_for(asyncio.gather(*(m.arrived.wait() for m in members)), 600)
    burst_seconds = time.perf_counter() - sent
    for m in members:
        await m.ws.close()
    for reader in readers:
        reader.cancel()
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "join_seconds": join_seconds,
        "kib_per_connection": per_connection / 1024,
        "p50_ms": statistics.median(latencies),
        "p99_ms": quantiles[98],
        "messages_per_second": burst / burst_seconds,
        "receipts_per_second": burst * count / burst_seconds,
    }


def run() -> str:
    count = int(os.environ.get("BENCH_HUB_CONNECTIONS", "1000"))
    rounds = int(os.environ.get("BENCH_HUB_ROUNDS", "100"))
    burst = int(os.environ.get("BENCH_HUB_BURST", "200"))
    with tempfile.TemporaryDirectory() as work:
        server = start_roomserver_process(Path(work) / "data")
        try:
            result = asyncio.run(_measure(server, count, rounds, burst))
        finally:
            server.stop()
    return "\n".join(
        [
            "## Hub (SignalR `/room`)",
            "",
            f"{count} WebSocket connections joined to one room (clients in the benchmark process, server in "
            f"its own). Broadcast latency is from one member's `SendToRoom` to the last of the {count} "
            "receipts (each message is stored in the event log before it is delivered).",
            "",
            "| measure | value |",
            "|---|---|",
            f"| {count} joins (100 at a time) | {result['join_seconds']:.1f} s |",
            f"| server memory per connection (RSS delta / N) | {result['kib_per_connection']:.0f} KiB |",
            f"| fan-out latency to {count}, p50 ({rounds} rounds) | {result['p50_ms']:.1f} ms |",
            f"| fan-out latency to {count}, p99 | {result['p99_ms']:.1f} ms |",
            f"| messages through one room ({burst} in a row) | {result['messages_per_second']:.0f} msg/s |",
            f"| deliveries (messages × receivers) | {result['receipts_per_second']:.0f} /s |",
        ]
    )


if __name__ == "__main__":
    print(run())
