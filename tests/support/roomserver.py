"""Run a real room server for tests and benchmarks: in the test's event loop, or as a subprocess.

`running_roomserver` serves `roomserver.app.create_app` with uvicorn on a random 127.0.0.1 port;
`roomserver_process` starts `python -m roomserver serve` (for kill -9 tests and benchmarks). Both write a
tokens file into the data folder and hand back a token holding the requested scopes and an admin token.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from roomcontract.scopes import ALL_SCOPES
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.servers import free_port, serve_app

FULL_SCOPES: tuple[str, ...] = ALL_SCOPES


@dataclass
class RoomServerHandle:
    """A room server running in the test's loop."""

    url: str
    token: str
    admin_token: str
    data_dir: Path
    app: Any


def write_tokens(data_dir: Path, scopes: tuple[str, ...]) -> tuple[Path, str, str]:
    """A tokens file (SHA-256 entries) with a `test` token holding `scopes` and an `admin` token."""
    data_dir.mkdir(parents=True, exist_ok=True)
    token, admin_token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    document = {
        "tokens": [
            {"name": "test", "sha256": hashlib.sha256(token.encode()).hexdigest(), "scopes": list(scopes)},
            {
                "name": "admin",
                "sha256": hashlib.sha256(admin_token.encode()).hexdigest(),
                "scopes": list(FULL_SCOPES),
            },
        ]
    }
    path = data_dir / "tokens.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path, token, admin_token


@contextlib.asynccontextmanager
async def running_roomserver(
    data_dir: Path,
    *,
    scopes: tuple[str, ...] = FULL_SCOPES,
    insecure: bool = False,
    port: int | None = None,
    **settings: Any,
) -> AsyncIterator[RoomServerHandle]:
    """Serve a room server (data in `data_dir`) on 127.0.0.1 (`port`, or a random one) for the duration
    of the block."""
    tokens_file, token, admin_token = write_tokens(data_dir, scopes)
    app = create_app(
        ServerSettings(data_dir=data_dir, tokens_file=tokens_file, insecure_no_auth=insecure, **settings)
    )
    async with serve_app(app, port=port) as url:
        try:
            yield RoomServerHandle(url=url, token=token, admin_token=admin_token, data_dir=data_dir, app=app)
        finally:
            app.state.roomserver.feed.close()  # end open SSE streams so uvicorn can stop


@dataclass
class RoomServerProcess:
    """`roomserver serve` in a child process."""

    url: str
    token: str
    admin_token: str
    data_dir: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        """What the server wrote to stdout and stderr (`<data>/roomserver.log`)."""
        return (self.data_dir / "roomserver.log").read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the durability tests' crash)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def start_roomserver_process(
    data_dir: Path,
    *,
    scopes: tuple[str, ...] = FULL_SCOPES,
    extra_args: tuple[str, ...] = (),
    timeout: float = 30.0,
) -> RoomServerProcess:
    """Start `python -m roomserver serve` on a free 127.0.0.1 port and wait until `/health` answers.

    Its output goes to `<data_dir>/roomserver.log` (a file, so a chatty server never blocks on a full pipe).
    """
    tokens_file, token, admin_token = write_tokens(data_dir, scopes)
    port = free_port()
    command = [sys.executable, "-m", "roomserver", "serve", "--port", str(port), "--data", str(data_dir)]
    command += ["--tokens", str(tokens_file), *extra_args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with (data_dir / "roomserver.log").open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    handle = RoomServerProcess(url, token, admin_token, data_dir, process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"roomserver exited with {process.returncode}: {handle.log()[-2000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return handle
        time.sleep(0.05)  # polling a child process's readiness: there is no event to await
    handle.kill()
    raise RuntimeError(f"roomserver did not answer /health on {url} within {timeout} s")


@contextlib.contextmanager
def roomserver_process(
    data_dir: Path, *, scopes: tuple[str, ...] = FULL_SCOPES
) -> Iterator[RoomServerProcess]:
    """`start_roomserver_process` as a context manager that stops the server on exit."""
    handle = start_roomserver_process(data_dir, scopes=scopes)
    try:
        yield handle
    finally:
        handle.stop()


async def upload_artifact(
    client: httpx.AsyncClient,
    room_id: str,
    name: str,
    data: bytes,
    *,
    type: str = "document",
    workspace: str | None = None,
    tags: tuple[str, ...] = (),
    fingerprint: str | None = None,
    entity: str | None = None,
    parts: dict[str, str] | None = None,
) -> httpx.Response:
    """POST a room artifact (or, with `entity`, one in that entity's workspace as that entity)."""
    spec: dict[str, Any] = {"name": name, "type": type, "tags": list(tags)}
    if workspace is not None:
        spec["workspace"] = workspace
    if fingerprint is not None:
        spec["fingerprint"] = fingerprint
    files: dict[str, Any] = {"spec": (None, json.dumps(spec)), "data": (name, data)}
    files.update({key: (None, value) for key, value in (parts or {}).items()})
    path = (
        f"/rooms/{room_id}/artifacts" if entity is None else f"/rooms/{room_id}/entities/{entity}/artifacts"
    )
    headers = {} if entity is None else {"X-Entity-Id": entity}
    return await client.post(path, files=files, headers=headers)
