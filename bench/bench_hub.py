"""Hub benchmark: N concurrent SignalR connections in one room of a `roomserver serve` child process.

Measures the server's memory per connection (RSS after N joined sessions minus before, over N), the
broadcast fan-out latency (one room message, from the send to the last of the N receipts; p50/p99 over
`BENCH_HUB_ROUNDS` rounds), and the throughput of one room (messages sent back to back by one member,
counted until every connection got the last: receipts per second and messages per second). Clients are
raw WebSocket connections speaking the JSON protocol (`tests/hub/client.py`'s framing) in this process.
`BENCH_HUB_CONNECTIONS` (default 1000) sets N.

A second server process holds `BENCH_HUB_POLLERS` (default 100) long-polling connections in one room
(httpx, each polling in a loop as `@microsoft/signalr` does): their memory per connection and fan-out
latency, one member sending.
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

import httpx
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
                elif record == '{"type":6}':  # answer the server's keep-alive, as a client's own pings would
                    await self.ws.send(record + RS)

    async def invoke(self, invocation_id: str, target: str, *args: Any) -> dict[str, Any]:
        frame = {"type": 1, "invocationId": invocation_id, "target": target, "arguments": list(args)}
        await self.ws.send(json.dumps(frame) + RS)
        return await asyncio.wait_for(self.completions.get(), 120)


async def _connect(server: RoomServerProcess, index: int) -> Member:
    url = server.url.replace("http://", "ws://") + "/room"
    headers = {"Authorization": f"Bearer {server.token}"}
    # No WebSocket-level pings: the hub's own keep-alive covers liveness, and a busy client process would
    # answer them late and drop its own connections.
    ws = await connect(url, additional_headers=headers, max_queue=None, ping_interval=None)
    await ws.send(json.dumps({"protocol": "json", "version": 1}) + RS)
    assert await ws.recv() == "{}" + RS
    return Member(ws, index)


def _chat(text: str, sender: str = "E-m0") -> dict[str, Any]:
    return {"from": sender, "type": "chat", "payload": {"text": text}}


class Poller:
    """One long-polling connection: `run` polls until stopped, counting `message` events as `Member`."""

    def __init__(self, http: httpx.AsyncClient, token: str, index: int):
        self.http = http
        self.url = f"/room?id={token}"
        self.index = index
        self.seen = 0
        self.target = 0
        self.arrived = asyncio.Event()
        self.completions: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def run(self) -> None:
        while True:
            answer = await self.http.get(self.url)
            if answer.status_code == 204:
                return
            answer.raise_for_status()
            for record in answer.text.split(RS)[:-1]:
                if record.startswith('{"type":1,"target":"message"'):
                    self.seen += 1
                    if self.seen >= self.target:
                        self.arrived.set()
                elif record.startswith('{"type":3'):
                    await self.completions.put(json.loads(record))

    async def invoke(self, target: str, *args: Any) -> dict[str, Any]:
        frame = {"type": 1, "invocationId": "i", "target": target, "arguments": list(args)}
        await self.http.post(self.url, content=json.dumps(frame) + RS)
        return await asyncio.wait_for(self.completions.get(), 120)


async def _poll_connect(http: httpx.AsyncClient, index: int) -> Poller:
    token = (await http.post("/room/negotiate?negotiateVersion=1")).json()["connectionToken"]
    poller = Poller(http, token, index)
    assert (await http.get(poller.url)).content == b""  # the first poll answers at once
    await http.post(poller.url, content=json.dumps({"protocol": "json", "version": 1}) + RS)
    assert (await http.get(poller.url)).text == "{}" + RS
    return poller


async def _measure_polling(server: RoomServerProcess, count: int, rounds: int) -> dict[str, float]:
    process = psutil.Process(server.process.pid)
    room = f"{ROOM}-lp"
    limits = httpx.Limits(max_connections=count + 16, max_keepalive_connections=count + 16)
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, timeout=120) as http:
        before = process.memory_info().rss
        pollers: list[Poller] = []
        loops = []
        for i in range(count):  # each polls at once (a poller idle past the disconnect timeout is closed)
            pollers.append(await _poll_connect(http, i))
            loops.append(asyncio.create_task(pollers[-1].run()))
        for chunk in range(0, count, 50):
            joins = [
                p.invoke("Join", room, {"id": f"E-p{p.index}", "kind": "agent"})
                for p in pollers[chunk : chunk + 50]
            ]
            for completion in await asyncio.gather(*joins):
                assert "error" not in completion, completion
        per_connection = (process.memory_info().rss - before) / count
        latencies = []
        for i in range(rounds):
            for p in pollers:
                p.target, p.arrived = p.seen + 1, asyncio.Event()
            sent = time.perf_counter()
            await pollers[0].invoke("SendToRoom", room, _chat(f"round {i}", "E-p0"))
            await asyncio.wait_for(asyncio.gather(*(p.arrived.wait() for p in pollers)), 120)
            latencies.append((time.perf_counter() - sent) * 1000)
        for p in pollers:
            await http.delete(p.url)
        await asyncio.gather(*loops, return_exceptions=True)
    quantiles = statistics.quantiles(latencies, n=100)
    return {
        "kib_per_connection": per_connection / 1024,
        "p50_ms": statistics.median(latencies),
        "p99_ms": quantiles[98],
    }


async def _measure(server: RoomServerProcess, count: int, rounds: int, burst: int) -> dict[str, float]:
    process = psutil.Process(server.process.pid)
    before = process.memory_info().rss
    members: list[Member] = []
    readers = []
    for i in range(count):  # each reads (and answers pings) while the others connect
        members.append(await _connect(server, i))
        readers.append(asyncio.create_task(members[-1].read()))
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
    pollers = int(os.environ.get("BENCH_HUB_POLLERS", "100"))
    poll_rounds = min(rounds, 30)
    with tempfile.TemporaryDirectory() as work:
        server = start_roomserver_process(Path(work) / "data")
        try:
            result = asyncio.run(_measure(server, count, rounds, burst))
        finally:
            server.stop()
        server = start_roomserver_process(Path(work) / "polling")  # a fresh process: its own RSS delta
        try:
            polling = asyncio.run(_measure_polling(server, pollers, poll_rounds))
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
            f"| long polling: server memory per connection ({pollers}, own server process) | "
            f"{polling['kib_per_connection']:.0f} KiB |",
            f"| long polling: fan-out latency to {pollers}, p50 ({poll_rounds} rounds) | "
            f"{polling['p50_ms']:.1f} ms |",
            f"| long polling: fan-out latency to {pollers}, p99 | {polling['p99_ms']:.1f} ms |",
        ]
    )


if __name__ == "__main__":
    print(run())
