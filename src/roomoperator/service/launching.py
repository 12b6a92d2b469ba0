"""What `roomop up` and `roomop serve` run: credentials, the data folder's lock, the room server as a
supervised child process, and the operator served in-process with uvicorn.

The room server is never imported: it is started as `python -m roomserver serve` and reached over HTTP,
exactly as in production. Credentials are generated once per data folder and kept in
`<data>/credentials.json` (mode 0600); the room server's tokens file only holds their SHA-256.

One `roomop up` per data folder: `<data>/roomop.lock` is held with `flock` (released by the kernel when
the process ends, however it ends) and holds the owner's pid. Both ports are checked before anything
starts, so a second instance fails in one line naming the conflict instead of talking to the first
one's services. One operator per SQLite store (`roomop serve` and `roomop up` alike): `<database>.lock`
next to the database file is held the same way while the operator serves, so a second one refuses to
start, naming the first one's pid (replicas need PostgreSQL).

The room server child is supervised: when it exits unasked it is restarted with the one backoff formula,
and after `RESTARTS_BEFORE_GIVING_UP` failed restarts in a row `supervise` gives up, which stops the whole
stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import structlog
import uvicorn
from fastapi import FastAPI

from roomcontract.scopes import ALL_SCOPES
from roomcontract.tokens import hash_token
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.backoff import Backoff
from roomoperator.service.app import create_app
from roomoperator.service.connections import server_config
from roomoperator.settings import OperatorSettings, sqlite_file

log = structlog.get_logger(__name__)

LOCK_FILE = "roomop.lock"
RESTART_BACKOFF = Backoff(0.5, 10.0)
"""Waits before restarting a room server that exited: 0.5 s, 1 s, 2 s, ... at most 10 s."""
RESTARTS_BEFORE_GIVING_UP = 5


class LaunchError(RuntimeError):
    """The room server or the operator could not be started, or the room server keeps exiting."""


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


@contextlib.contextmanager
def data_folder_lock(data: Path) -> Iterator[None]:
    """Hold `<data>/roomop.lock` (flock) while the block runs; `LaunchError` naming the holder's pid when
    another process holds it."""
    data.mkdir(parents=True, exist_ok=True)
    with _pid_lock(
        data / LOCK_FILE,
        lambda holder: (
            f"another `roomop up` (pid {holder}) is using the data folder {data}: stop it (Ctrl-C"
            " there), or give this one another folder with --data"
        ),
    ):
        yield


@contextlib.contextmanager
def store_lock(settings: OperatorSettings) -> Iterator[None]:
    """Hold `<database>.lock` next to a SQLite store's file while the block runs (nothing for PostgreSQL
    or an in-memory store); `LaunchError` naming the other operator's pid when one holds it."""
    database = sqlite_file(settings.store.url)
    if database is None:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with _pid_lock(
        database.with_name(database.name + ".lock"),
        lambda holder: (
            f"another operator (pid {holder}) is using the SQLite store {database}: a SQLite store takes one"
            " operator; stop that one, or run several replicas on a PostgreSQL store"
            ' (--store postgresql://..., docs/operator.md, "Running replicas")'
        ),
    ):
        yield


@contextlib.contextmanager
def _pid_lock(path: Path, refusal: Callable[[str], str]) -> Iterator[None]:
    """Hold `path` (flock, released by the kernel however the process ends) with this pid in it;
    `LaunchError(refusal(holder's pid))` when another process holds it."""
    with path.open("a+", encoding="utf-8") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise LaunchError(refusal(lock.read().strip() or "unknown")) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        try:
            yield
        finally:
            lock.seek(0)
            lock.truncate()


def check_ports_free(host: str, ports: Mapping[str, int]) -> None:
    """`LaunchError` naming the first port (by its option name) that something already listens on."""
    for option, port in ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                probe.bind((host, port))
            except OSError as exc:
                reason = (exc.strerror or str(exc)).lower()
                raise LaunchError(
                    f"port {port} on {host} ({option}) is already in use ({reason}),"
                    f" probably by another `roomop up` or room server: stop it, or pass {option} with a free"
                    " port"
                ) from None


def _exit_reason(code: int) -> str:
    return f"was killed by signal {-code}" if code < 0 else f"exited with code {code}"


class RoomServerChild:
    """`roomserver serve` as a child process of this event loop: started, supervised, stopped."""

    def __init__(self, data: Path, *, host: str, port: int, tokens_file: Path | None) -> None:
        self.url = f"http://{host}:{port}"
        self.log_path = data / "roomserver.log"
        self.process: asyncio.subprocess.Process | None = None
        self._command = [sys.executable, "-m", "roomserver", "serve", "--host", host, "--port", str(port)]
        self._command += ["--data", str(data / "roomserver")]
        self._command += ["--tokens", str(tokens_file)] if tokens_file else ["--insecure-no-auth"]
        self._stopping = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    async def start(self, *, within: float = 30.0) -> None:
        """Start the room server and wait until its `/health` answers; `LaunchError` when it exits or
        stays silent."""
        with self.log_path.open("ab") as log_file:
            # A session of its own: a terminal's Ctrl-C reaches only `roomop up`, which stops the child once
            # (a second SIGINT would make uvicorn skip its shutdown).
            process = await asyncio.create_subprocess_exec(
                *self._command, stdout=log_file, stderr=asyncio.subprocess.STDOUT, start_new_session=True
            )
        self.process = process
        exited = asyncio.ensure_future(process.wait())
        try:
            async with asyncio.timeout(within):
                while not exited.done():
                    if await _answers_health(self.url):
                        return
                    # Waiting for a child process to listen: there is no event to await, but its exit.
                    await asyncio.wait([exited], timeout=0.1)
        except TimeoutError:
            await _interrupt(process, grace=10.0)
            raise LaunchError(
                f"the room server did not answer on {self.url} within {within:.0f} s: see {self.log_path}"
            ) from None
        finally:
            exited.cancel()
        raise LaunchError(f"the room server {_exit_reason(process.returncode or 0)}: see {self.log_path}")

    async def supervise(self, *, backoff: Backoff = RESTART_BACKOFF, stable_after: float = 30.0) -> None:
        """Restart the room server each time it exits unasked, waiting `backoff` after each exit in a row
        (a run of `stable_after` seconds starts the count again); one log line per exit and per restart.
        Raises `LaunchError` after `RESTARTS_BEFORE_GIVING_UP` exits in a row."""
        failures = 0
        while self.process is not None:
            started = time.monotonic()
            code = await self.process.wait()
            if self._stopping:
                return
            failures = 1 if time.monotonic() - started >= stable_after else failures + 1
            if failures > RESTARTS_BEFORE_GIVING_UP:
                raise LaunchError(
                    f"the room server {_exit_reason(code)} again ({RESTARTS_BEFORE_GIVING_UP} restarts in a"
                    f" row did not hold): stopping; see {self.log_path}"
                )
            delay = backoff.delay(failures)
            log.warning(
                f"the room server {_exit_reason(code)}: restarting it in {delay:.1f} s (restart {failures})",
                exit_code=code,
                restart=failures,
            )
            await asyncio.sleep(delay)
            try:
                await self.start()
            except LaunchError as exc:
                log.warning(f"restarting the room server failed: {exc}", restart=failures)
                continue
            log.info(f"the room server is back on {self.url} (pid {self.pid})", restart=failures)

    async def stop(self, *, grace: float = 10.0) -> None:
        """Stop supervising and interrupt the room server (SIGINT, as Ctrl-C would)."""
        self._stopping = True
        if self.process is not None:
            await _interrupt(self.process, grace=grace)


async def _interrupt(process: asyncio.subprocess.Process, *, grace: float) -> None:
    """SIGINT, then wait for the exit; SIGKILL after `grace` seconds."""
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        async with asyncio.timeout(grace):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


async def _answers_health(url: str) -> bool:
    async with RoomServerClient(url, timeout=1.0) as client:
        return await client.health()


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
    """Serve the operator with uvicorn in this event loop (holding a SQLite store's lock); yields once it
    listens."""
    with store_lock(settings):
        async with _serving(settings) as served:
            yield served


@contextlib.asynccontextmanager
async def _serving(
    settings: OperatorSettings,
) -> AsyncIterator[tuple[FastAPI, uvicorn.Server, asyncio.Task[None]]]:
    app = create_app(settings)
    config = server_config(app, settings.api, log_config=None, lifespan="on", timeout_graceful_shutdown=30)
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
