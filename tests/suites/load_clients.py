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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.roomserver import upload_artifact

# A request whose reused connection the server closed before answering: a client MAY send an idempotent
# one again on a new connection (RFC 9112, 9.3.1), as browsers, .NET's HttpClient and aiohttp do; httpx
# does not, so the clients here do it themselves, once, and count it.
CLOSED_UNDER_REQUEST = (httpx.ReadError, httpx.RemoteProtocolError)


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)

    async def call(
        self,
        kind: str,
        send: Callable[[], Awaitable[httpx.Response]],
        ok: tuple[int, ...],
        *,
        idempotent: bool = False,
    ) -> None:
        started = time.perf_counter()
        try:
            try:
                answer = await send()
            except CLOSED_UNDER_REQUEST as exc:
                if not idempotent:
                    raise
                self.retried.append(_failure(kind, exc, started))
                answer = await send()
        except httpx.HTTPError as exc:
            self.failures.append(_failure(kind, exc, started))
            return
        self.latencies.setdefault(kind, []).append(time.perf_counter() - started)
        if answer.status_code not in ok:
            self.failures.append(f"{kind}: {answer.status_code} {answer.text[:100]}")


def _failure(kind: str, exc: httpx.HTTPError, started: float) -> str:
    """Type and cause tell a reset by the server (ReadError from BrokenResourceError), a close before the
    answer (RemoteProtocolError), a connection the pool closed (ClosedResourceError)."""
    waited = time.perf_counter() - started
    return f"{kind}: {type(exc).__name__} ({exc.__cause__!r}) after {waited:.3f} s"


async def member(
    rs: httpx.AsyncClient, tally: Tally, client: int, round_: int, config: dict[str, Any]
) -> None:
    """One client's round: the first declares its entity, each later one uploads an artifact to the
    entity's workspace and reads it back; every round reads the room's state."""
    room, entity = f"room-{config['run']}-{client % config['rooms']:02d}", f"E-load-{client}"
    if round_ == 0:
        body = {"entityId": entity, "kind": "agent"}
        await tally.call("join", lambda: rs.post(f"/room/{room}/join", json=body), (201,))
    else:
        name = f"c{client}-r{round_}"
        await tally.call(
            "upload", lambda: upload_artifact(rs, room, name, b"x" * 2048, entity=entity), (201,)
        )
        path, headers = f"/rooms/{room}/entities/{entity}/artifacts/{name}", {"X-Entity-Id": entity}
        await tally.call("download", lambda: rs.get(path, headers=headers), (200,), idempotent=True)
    await tally.call("state", lambda: rs.get(f"/room/{room}/state"), (200,), idempotent=True)


async def watcher(op: httpx.AsyncClient, tally: Tally, rounds: int) -> None:
    for _ in range(rounds):
        await tally.call("operator /status", lambda: op.get("/status"), (200,), idempotent=True)


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
    return {
        "latencies": tally.latencies,
        "failures": tally.failures,
        "retried": tally.retried,
        "elapsed": elapsed,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))))
