"""GitOps benchmarks: time from `git commit` (and push) to the rooms converged, for one room changed and
for 100 rooms changed in one commit, through a git source woken by its push webhook; and from a file
write to the room converged through a folder source (the file watch).

The room server and the operator (`roomop serve --git ... --specs ...`) each run in their own process
with SQLite stores in a temp folder; the repository is a local bare one (`file://`). A room counts as
converged when `GET /rooms` shows it at the commit's revision with `Ready=True`. Writes are rate-limited
at 5,000/s. `BENCH_GITOPS_ROOMS` sets the size of the fleet commit (default 100).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.bench_operator import _free_port, _wait_until_up

ROOMS = int(os.environ.get("BENCH_GITOPS_ROOMS", "100"))
ENTITIES = 5
SINGLE_RUNS = 5
SECRET = "bench-secret"


def _git(cwd: Path, *args: str) -> str:
    command = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args]
    return subprocess.run(command, cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _spec(index: int, version: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": {"name": f"gitops-{index}", "version": version},
        "spec": {
            "roomId": f"room-gitops-{index:05d}",
            "entities": [{"id": f"E-agent-{n:02d}", "kind": "agent"} for n in range(ENTITIES + version)],
        },
    }


def _write(folder: Path, index: int, version: int) -> None:
    (folder / f"room-{index:05d}.room.yaml").write_text(json.dumps(_spec(index, version)) + "\n")


def _commit(work: Path, message: str) -> str:
    _git(work, "add", "-A")
    _git(work, "commit", "--quiet", "-m", message)
    _git(work, "push", "--quiet", "origin", "main")
    return _git(work, "rev-parse", "HEAD")


async def _hook(http: httpx.AsyncClient) -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    answer = await http.post("/hooks/git", content=body, headers={"X-Hub-Signature-256": signature})
    answer.raise_for_status()


async def _rooms(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    while True:
        params = {"limit": "500", **({"cursor": cursor} if cursor else {})}
        page = (await http.get("/rooms", params=params)).json()
        found.update((item["roomId"], item) for item in page["items"])
        cursor = page.get("nextCursor")
        if not cursor:
            return found


def _ready(room: dict[str, Any], version: int) -> bool:
    states = {c["type"]: c["status"] for c in room["conditions"]}
    return room["specVersion"] == version and states.get("Ready") == "True"


async def _converged(http: httpx.AsyncClient, rooms: dict[str, int], *, within: float = 300.0) -> None:
    """Until each room shows its spec version and Ready=True (polled: the bench measures from outside)."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        found = await _rooms(http)
        if all(room in found and _ready(found[room], version) for room, version in rooms.items()):
            return
        await asyncio.sleep(0.02)
    raise RuntimeError("the rooms did not converge in time")


def _room(index: int) -> str:
    return f"room-gitops-{index:05d}"


async def _measure(operator_url: str, work: Path, folder: Path) -> dict[str, Any]:
    rooms = work / "rooms"
    async with httpx.AsyncClient(base_url=operator_url, timeout=30) as http:
        for index in range(ROOMS):
            _write(rooms, index, 1)
        _commit(work, "fleet")
        await _hook(http)
        await _converged(http, {_room(index): 1 for index in range(ROOMS)})

        single: list[float] = []
        for run in range(SINGLE_RUNS):
            version = run + 2
            _write(rooms, 0, version)
            started = time.perf_counter()
            _commit(work, f"one room v{version}")
            await _hook(http)
            await _converged(http, {_room(0): version})
            single.append(time.perf_counter() - started)

        for index in range(ROOMS):
            _write(rooms, index, 9)
        started = time.perf_counter()
        _commit(work, "every room")
        await _hook(http)
        await _converged(http, {_room(index): 9 for index in range(ROOMS)})
        fleet = time.perf_counter() - started

        watched: list[float] = []
        for run in range(SINGLE_RUNS):
            version = run + 1
            started = time.perf_counter()
            (folder / "local.room.yaml").write_text(json.dumps(_spec(90_000, version)) + "\n")
            await _converged(http, {_room(90_000): version})
            watched.append(time.perf_counter() - started)
    return {"single": single, "fleet": fleet, "watched": watched}


def run() -> str:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        origin, work, folder = tmp / "origin.git", tmp / "work", tmp / "specs"
        _git(tmp, "init", "--quiet", "--bare", "-b", "main", str(origin))
        _git(tmp, "init", "--quiet", "-b", "main", str(work))
        _git(work, "remote", "add", "origin", str(origin))
        (work / "rooms").mkdir()
        (work / "rooms" / "README.md").write_text("bench rooms\n")
        _commit(work, "empty")
        folder.mkdir()
        server_port, operator_port = _free_port(), _free_port()
        server_url, operator_url = f"http://127.0.0.1:{server_port}", f"http://127.0.0.1:{operator_port}"
        serve = ["serve", "--port", str(server_port), "--data", str(tmp / "rs"), "--insecure-no-auth"]
        server = subprocess.Popen(
            [sys.executable, "-m", "roomserver", *serve], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        env = {
            **os.environ,
            "ROOMOP_DATA_DIR": str(tmp / "data"),
            "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
            "ROOMOP_RECONCILIATION__RATE_LIMIT_PER_SECOND": "5000",
            "ROOMOP_LOGGING__LEVEL": "warning",
        }
        roomop = Path(sys.executable).parent / "roomop"
        command = [
            str(roomop), "serve", "--port", str(operator_port), "--server", server_url,
            "--store", f"sqlite:///{tmp / 'operator.db'}", "--git", f"file://{origin}", "--branch", "main",
            "--path", "rooms", "--specs", str(folder), "--interval", "300", "--webhook-secret", SECRET,
        ]  # fmt: skip
        operator = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_until_up(server_url, server)
            _wait_until_up(operator_url, operator)
            numbers = asyncio.run(_measure(operator_url, work, folder))
        finally:
            for process in (operator, server):
                process.terminate()
                process.wait(timeout=60)
    single, watched = numbers["single"], numbers["watched"]
    one, files = statistics.median(single) * 1000, statistics.median(watched) * 1000
    return "\n".join(
        [
            "## GitOps",
            "",
            "Time from `git commit` + push (webhook `POST /hooks/git`) to every changed room converged"
            f" (`Ready=True` at the new version, {ENTITIES}+ entities per room), and from a spec file"
            " written in a watched folder to its room converged.",
            "",
            "| measure | result |",
            "|---|---|",
            f"| one room changed in a commit (median of {SINGLE_RUNS}) | {one:.0f} ms"
            f" (min {min(single) * 1000:.0f}, max {max(single) * 1000:.0f}) |",
            f"| {ROOMS} rooms changed in one commit | {numbers['fleet'] * 1000:.0f} ms |",
            f"| a spec file written in a watched folder (median of {SINGLE_RUNS}) | {files:.0f} ms |",
        ]
    )
