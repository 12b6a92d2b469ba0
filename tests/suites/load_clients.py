"""The load suite's clients, run as their own process (`python -m tests.suites.load_clients CONFIG`), so
their CPU is not the test process's and the servers are measured under clients from another process.

CONFIG is a JSON object: `roomserver`, `operator` (base URLs), `token`, `clients`, `rooms`, `rounds`,
`run` (the rooms' name prefix) and `watchers`. Each client declares its own entity, then, round after
round, uploads a 2 KiB artifact to its workspace, reads it back and reads its room's state, while the
watchers poll the operator's `/status`. Printed on stdout, one JSON object: every request's latency by
kind, the failures, and the elapsed seconds.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.roomserver import upload_artifact


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    async def call(self, kind: str, request: Any, ok: tuple[int, ...]) -> None:
        started = time.perf_counter()
        try:
            answer = await request
        except httpx.HTTPError as exc:
            # Type and cause tell a reset by the server (ReadError from BrokenResourceError), a close
            # before the answer (RemoteProtocolError), a connection the pool closed (ClosedResourceError).
            waited = time.perf_counter() - started
            self.failures.append(f"{kind}: {type(exc).__name__} ({exc.__cause__!r}) after {waited:.3f} s")
            return
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        if answer.status_code not in ok:
            self.failures.append(f"{kind}: {answer.status_code} {answer.text[:100]}")


async def member(
    rs: httpx.AsyncClient, tally: Tally, client: int, round_: int, config: dict[str, Any]
) -> None:
    """One client's round: the first declares its entity, each later one uploads an artifact to the
    entity's workspace and reads it back; every round reads the room's state."""
    room, entity = f"room-{config['run']}-{client % config['rooms']:02d}", f"E-load-{client}"
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


async def main(config: dict[str, Any]) -> dict[str, Any]:
    clients = config["clients"]
    # One connection per client; idle ones dropped well before the servers' keep-alive of 5 s, as a client
    # must, or a request sent as the server closes an idle connection fails (the keep-alive race).
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2)
    auth = {"Authorization": f"Bearer {config['token']}"}
    tally = Tally()
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(base_url=config["roomserver"], headers=auth, timeout=60, limits=limits) as rs,
        httpx.AsyncClient(base_url=config["operator"], timeout=30, limits=limits) as op,
    ):
        for round_ in range(config["rounds"]):
            await asyncio.gather(
                *(member(rs, tally, client, round_, config) for client in range(clients)),
                *(watcher(op, tally, 5) for _ in range(config["watchers"])),
            )
    elapsed = time.perf_counter() - started
    return {"latencies": tally.latencies, "failures": tally.failures, "elapsed": elapsed}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
