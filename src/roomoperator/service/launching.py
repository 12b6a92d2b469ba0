"""What `roomop up` and `roomop serve` run: credentials, the room server as a child process, and the
operator served in-process with uvicorn.

The room server is never imported: it is started as `python -m roomserver serve` and reached over HTTP,
exactly as in production. Credentials are generated once per data folder and kept in
`<data>/credentials.json` (mode 0600); the room server's tokens file only holds their SHA-256.
"""

from __future__ import annotations

import asyncio
import contextlib
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

import uvicorn
from fastapi import FastAPI

from roomcontract.scopes import ALL_SCOPES
from roomcontract.tokens import hash_token
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.service.app import create_app
from roomoperator.settings import OperatorSettings


class LaunchError(RuntimeError):
    """The room server or the operator could not be started."""


@dataclass(frozen=True)
class Credentials:
    """Tokens of one data folder: the operator's room-server token, an admin token, the API token."""

    operator_token: str
    admin_token: str
    api_token: str
    created: bool

    def as_json(self, *, operator_url: str, server_url: str) -> dict[str, object]:
        return {
            "operator": {"url": operator_url, "apiToken": self.api_token},
            "roomServer": {
                "url": server_url,
                "operatorToken": self.operator_token,
                "adminToken": self.admin_token,
            },
        }


def ensure_credentials(data: Path) -> Credentials:
    """Read `<data>/credentials.json`, or generate it (mode 0600) and the room server's tokens file."""
    path = data / "credentials.json"
    if path.exists():
        stored = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(
            operator_token=stored["roomServer"]["operatorToken"],
            admin_token=stored["roomServer"]["adminToken"],
            api_token=stored["operator"]["apiToken"],
            created=False,
        )
    return Credentials(
        operator_token=secrets.token_urlsafe(32),
        admin_token=secrets.token_urlsafe(32),
        api_token=secrets.token_urlsafe(32),
        created=True,
    )


def write_credentials(data: Path, credentials: Credentials, *, operator_url: str, server_url: str) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    path = data / "credentials.json"
    document = json.dumps(credentials.as_json(operator_url=operator_url, server_url=server_url), indent=2)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        stream.write(document + "\n")
    os.chmod(path, 0o600)
    tokens = {
        "tokens": [
            {"name": name, "sha256": hash_token(token), "scopes": list(ALL_SCOPES)}
            for name, token in (("operator", credentials.operator_token), ("admin", credentials.admin_token))
        ]
    }
    (data / "roomserver-tokens.json").write_text(json.dumps(tokens, indent=2) + "\n", encoding="utf-8")
    return path


@dataclass
class RoomServerChild:
    """`roomserver serve` running as a child process."""

    url: str
    process: subprocess.Popen[bytes]

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def _answers_health(url: str) -> bool:
    async with RoomServerClient(url, timeout=1.0) as client:
        return await client.health()


def start_roomserver(
    data: Path, *, host: str, port: int, tokens_file: Path | None, timeout: float = 30.0
) -> RoomServerChild:
    """Start the room server and wait until its `/health` answers."""
    command = [sys.executable, "-m", "roomserver", "serve", "--host", host, "--port", str(port)]
    command += ["--data", str(data / "roomserver")]
    command += ["--tokens", str(tokens_file)] if tokens_file else ["--insecure-no-auth"]
    log_file = (data / "roomserver.log").open("ab")
    process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    child = RoomServerChild(url=f"http://{host}:{port}", process=process)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise LaunchError(
                f"the room server exited with code {process.returncode}: see {data / 'roomserver.log'}"
            )
        if asyncio.run(_answers_health(child.url)):
            return child
        time.sleep(0.1)  # waiting for a child process to listen: there is no event to await
    child.stop()
    raise LaunchError(f"the room server did not answer on {child.url} within {timeout:.0f} s")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the launcher stops both services on SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def stop_on_signals() -> asyncio.Event:
    """An event set by SIGINT or SIGTERM (Ctrl-C, `kill`), so shutdown code always runs."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


@contextlib.asynccontextmanager
async def serving(
    settings: OperatorSettings,
) -> AsyncIterator[tuple[FastAPI, uvicorn.Server, asyncio.Task[None]]]:
    """Serve the operator with uvicorn in this event loop; yields once it listens."""
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.api.host,
        port=settings.api.port,
        log_config=None,
        lifespan="on",
        timeout_graceful_shutdown=30,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise LaunchError(f"the operator could not listen on {settings.api.host}:{settings.api.port}")
        await asyncio.sleep(0.05)
    try:
        yield app, server, task
    finally:
        app.state.audit.close()
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task
