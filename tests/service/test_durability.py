"""Durability: `kill -9` of a `roomop serve` process in the middle of applies loses nothing.

After a restart on the same store, every accepted apply resumes (audited `run.resumed`), every room
converges, and every audit entry streamed before the kill is still in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import EXAMPLES, room_spec, sse_data
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port

ROOMS = ("room-durable-0", "room-durable-1", "room-durable-2")
ENTITIES = 30


@contextlib.contextmanager
def roomop_serve(
    roomserver: RoomServerHandle, store: Path, port: int, **settings: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`roomop serve` as a child process on `port` over `store`; `settings`: more environment variables."""
    env = {
        **os.environ,
        "ROOMOP_ROOM_SERVER__BASE_URL": roomserver.url,
        "ROOM_AUTH_TOKEN": roomserver.token,
        "ROOMOP_STORE__URL": f"sqlite:///{store}",
        "ROOMOP_API__PORT": str(port),
        "ROOMOP_SEEDS__ROOTS": json.dumps([str(EXAMPLES)]),
        "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
        "ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "40",
        "ROOMOP_LOGGING__LEVEL": "warning",
        **settings,
    }
    roomop = Path(sys.executable).parent / "roomop"
    process = subprocess.Popen(
        [str(roomop), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code in (200, 503):
                    break
            time.sleep(0.05)  # waiting for a child process to listen: there is no event to await
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=20)


@pytest.mark.slow
async def test_kill_9_mid_apply_then_restart_converges_every_room(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    store, port = tmp_path / "operator.db", free_port()
    url = f"http://127.0.0.1:{port}"
    with roomop_serve(roomserver, store, port) as first:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http, sse_data(http, "/events") as entries:
            applies = [
                asyncio.create_task(http.post("/apply", json=room_spec(room, entities=ENTITIES)))
                for room in ROOMS
            ]
            before_kill: list[tuple[str, str, str]] = []
            async for entry in entries:
                if "action" not in entry:
                    continue  # the `connected` event
                before_kill.append((entry["correlationId"], entry["action"], entry["timestamp"]))
                if entry["action"] == "entity.joined":
                    break
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
            outcomes = await asyncio.gather(*applies, return_exceptions=True)
    assert any(isinstance(outcome, httpx.HTTPError) for outcome in outcomes), "the kill interrupted an apply"
    with roomop_serve(roomserver, store, port):
        async with httpx.AsyncClient(base_url=url, timeout=30) as http, sse_data(http, "/events") as entries:
            accepted: set[str] = set()
            async with asyncio.timeout(30):
                async for entry in entries:
                    if entry.get("action") == "spec.accepted":
                        accepted.add(entry["roomId"])
                    if accepted == set(ROOMS):
                        break
            for room in ROOMS:
                status = (await http.get(f"/rooms/{room}")).json()
                assert (status["managed"], status["specVersion"]) == (True, 1)
                state = (await admin.get(f"/room/{room}/state")).json()
                assert len(state["entities"]) == ENTITIES
            log = (await http.get("/audit", params={"count": 10_000})).json()["entries"]
            kept = {(e["correlationId"], e["action"], e["timestamp"]) for e in log}
            assert set(before_kill) <= kept
            resumed = [e for e in log if e["action"] == "run.resumed"]
            assert {e["roomId"] for e in resumed} == set(ROOMS)
