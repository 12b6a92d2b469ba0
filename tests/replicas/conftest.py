"""Operator replicas as real processes: `roomop serve` replicas on one PostgreSQL schema (short leases:
3 s / 2 s / 0.5 s) against a `roomserver serve` process, and helpers that read the truth from the store,
the room server and each replica's `/metrics`."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from roomoperator.store import normalise_url
from tests.service.conftest import EXAMPLES, roomserver
from tests.store.conftest import postgres_schema, postgres_url
from tests.support.roomserver import RoomServerProcess, roomserver_process
from tests.support.servers import free_port

T = TypeVar("T")
__all__ = ["roomserver"]  # the in-process room server fixture, for the client-side fencing test
LEASE = {
    "ROOMOP_REPLICAS__LEASE_SECONDS": "3",
    "ROOMOP_REPLICAS__RENEW_DEADLINE_SECONDS": "2",
    "ROOMOP_REPLICAS__RETRY_SECONDS": "0.5",
}


@dataclass
class Replica:
    """One `roomop serve` process of the test's replicas."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def metric(self, name: str) -> float:
        """The value of one unlabelled series of this replica's `/metrics`."""
        async with httpx.AsyncClient(timeout=10) as http:
            body = (await http.get(f"{self.url}/metrics")).text
        for line in body.splitlines():
            if line.startswith((f"{name} ", f"{name}_total ")):
                return float(line.split()[-1])
        raise AssertionError(f"{name} not in the metrics of {self.name}")


@dataclass
class Cluster:
    """Replicas sharing one PostgreSQL schema, and the room server they manage."""

    url: str
    schema: str
    server: RoomServerProcess
    root: Path
    replicas: dict[str, Replica] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)

    def start(self, *names: str) -> None:
        """Start the replicas `names` (all at once) and wait until each answers `/health`."""
        for name in names:
            self.replicas[name] = self._spawn(name)
        deadline = time.monotonic() + 60
        for name in names:
            replica = self.replicas[name]
            while True:
                assert replica.process.poll() is None, replica.log()[-3000:]
                assert time.monotonic() < deadline, (
                    f"{name} did not answer within 60 s: {replica.log()[-3000:]}"
                )
                try:
                    if httpx.get(f"{replica.url}/health", timeout=1).status_code in (200, 503):
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # waiting for a child process to listen: there is no event to await

    def _spawn(self, name: str) -> Replica:
        port = free_port()
        env = {
            **os.environ,
            "ROOMOP_ROOM_SERVER__BASE_URL": self.server.url,
            "ROOM_AUTH_TOKEN": self.server.token,
            "ROOMOP_STORE__URL": self.url,
            "ROOMOP_STORE__SCHEMA_NAME": self.schema,
            "ROOMOP_DATA_DIR": str(self.root / name),
            "ROOMOP_API__PORT": str(port),
            "ROOMOP_SEEDS__ROOTS": json.dumps([str(EXAMPLES)]),
            "ROOMOP_GUARDRAILS__REQUIRE_CONFIRM_HEADER": "false",
            "ROOMOP_RECONCILIATION__INTERVAL_SECONDS": "30",
            "ROOMOP_LOGGING__LEVEL": "info",
            "ROOMOP_REPLICAS__REPLICA_ID": name,
            **LEASE,
            **self.settings,
        }
        log_path = self.root / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "roomop"), "serve"], env=env, stdout=log, stderr=log
            )
        return Replica(name, port, process, log_path)

    def stop_all(self) -> None:
        for replica in self.replicas.values():
            if replica.process.poll() is None:
                replica.process.send_signal(signal.SIGCONT)
                replica.process.send_signal(signal.SIGINT)
        for replica in self.replicas.values():
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()

    async def query(self, sql: str, **params: Any) -> list[Any]:
        """Rows of `sql` on the replicas' schema (the store's truth)."""
        engine = create_async_engine(
            normalise_url(self.url), connect_args={"server_settings": {"search_path": self.schema}}
        )
        try:
            async with engine.connect() as connection:
                return list((await connection.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    async def holders(self) -> dict[str, tuple[str, int]]:
        """Room id -> (holder, epoch) of every live lease."""
        rows = await self.query("SELECT room_id, holder, epoch FROM room_leases WHERE expires_at > now()")
        return {row.room_id: (row.holder, int(row.epoch)) for row in rows}

    async def live_replicas(self, name: str) -> int:
        async with httpx.AsyncClient(timeout=10) as http:
            checks = (await http.get(f"{self.replicas[name].url}/health")).json()["checks"]
        return int(checks["leases"]["live"])


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    url = await postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (database test)")
    async with postgres_schema(url) as schema:
        with roomserver_process(tmp_path / "roomserver") as server:
            cluster = Cluster(url.replace("+asyncpg", ""), schema, server, tmp_path)
            try:
                yield cluster
            finally:
                cluster.stop_all()


async def eventually(check: Callable[[], Awaitable[T | None]], *, within: float = 60.0, what: str = "") -> T:
    """The first truthy result of `check()`, asked every 0.2 s: the replicas are other processes, whose
    progress there is no event for here. Fails after `within` seconds (a hang, not a timing assertion)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"not within {within} s: {what}"
        await asyncio.sleep(0.2)


def server_client(cluster: Cluster) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {cluster.server.admin_token}"}
    return httpx.AsyncClient(base_url=cluster.server.url, headers=headers, timeout=30)
