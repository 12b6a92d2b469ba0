"""`roomserver serve` as a real process: kill -9 during a stream of uploads loses no acknowledged write,
leaves no torn blob and no manifest without its bytes; the command refuses unsafe or broken settings."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import sqlite3
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from roomserver.app import create_app
from roomserver.cli import app
from roomserver.settings import ServerSettings
from roomserver.storage.database import Database
from tests.support.roomserver import roomserver_process, start_roomserver_process, upload_artifact

ROOM = "room-ai-lab-01"


async def _upload_until_killed(
    url: str, token: str, worker: int, acked: dict[str, str], enough: asyncio.Event
) -> None:
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=10
    ) as client:
        for i in range(10_000):
            data = os.urandom(64 * 1024 * (1 + i % 8))
            name = f"w{worker}-{i}"
            try:
                answer = await upload_artifact(client, ROOM, name, data)
            except httpx.TransportError:
                return  # the server died under this request: it was never acknowledged
            assert answer.status_code == 201, answer.text
            acked[name] = hashlib.sha256(data).hexdigest()
            if len(acked) >= 40:
                enough.set()


@pytest.mark.slow
async def test_kill_9_during_uploads_loses_no_acknowledged_write(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = start_roomserver_process(data_dir)
    acked: dict[str, str] = {}
    enough = asyncio.Event()
    workers = [
        asyncio.create_task(_upload_until_killed(first.url, first.token, w, acked, enough)) for w in range(4)
    ]
    waiting = asyncio.create_task(enough.wait())
    done, _ = await asyncio.wait([waiting, *workers], return_when=asyncio.FIRST_COMPLETED)
    assert done == {waiting}, "an upload worker stopped before the crash"
    first.kill()  # SIGKILL while four uploads are in flight
    await asyncio.gather(*workers)

    with roomserver_process(data_dir) as second:
        headers = {"Authorization": f"Bearer {second.token}"}
        async with httpx.AsyncClient(base_url=second.url, headers=headers, timeout=10) as client:
            state = (await client.get(f"/room/{ROOM}/state")).json()
            stored = {a["name"]: a["sha256"] for a in state["artifacts"]}
            assert acked.items() <= stored.items()  # every acknowledged upload, with its exact bytes' hash
            for name in list(acked)[:: max(1, len(acked) // 10)]:
                body = (await client.get(f"/rooms/{ROOM}/artifacts/{name}")).content
                assert hashlib.sha256(body).hexdigest() == acked[name]
        assert second.token not in second.log()
    blobs = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in (data_dir / "blobs").iterdir()}
    assert all(name == digest for name, digest in blobs.items())  # no torn blob
    assert set(stored.values()) <= set(blobs)  # no manifest without its bytes
    assert list((data_dir / "tmp").iterdir()) == []  # partial uploads were cleaned at restart


def test_serve_refuses_insecure_mode_off_loopback(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["serve", "--host", "0.0.0.0", "--insecure-no-auth", "--data", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "refused on non-loopback host" in result.output


def test_serve_refuses_a_broken_tokens_file_without_showing_its_values(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        "tokens:\n  - name: op\n    token: not-a-real-secret-value-123\n    scopes: [room:everything]\n"
    )
    result = CliRunner().invoke(app, ["serve", "--tokens", str(tokens), "--data", str(tmp_path)])
    assert result.exit_code == 2
    assert "tokens.0.scopes" in result.output
    assert "not-a-real-secret-value-123" not in result.output


@pytest.mark.slow
async def test_interrupt_ends_open_event_streams_and_exits_cleanly(tmp_path: Path) -> None:
    server = start_roomserver_process(tmp_path / "data")
    try:
        headers = {"Authorization": f"Bearer {server.token}"}
        async with (
            httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client,
            client.stream("GET", "/events") as stream,
        ):
            lines = stream.aiter_lines()
            assert (await anext(lines)) == "event: connected"
            server.process.send_signal(signal.SIGINT)
            rest: list[str] = []
            # The server ends the stream instead of hanging on it: a last chunk, or (when shutdown
            # cancels the response first) a closed connection.
            with contextlib.suppress(httpx.RemoteProtocolError):
                rest.extend([line async for line in lines])
        assert all(line == "" or line.startswith("data:") for line in rest)
        # without ending the streams first, uvicorn would wait for them forever (TimeoutExpired here);
        # uvicorn re-raises the interrupt once shut down, hence 130
        assert server.process.wait(timeout=20) in (0, 130)
        assert "Application shutdown complete" in server.log()
    finally:
        server.stop()


async def test_a_database_from_a_newer_server_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "roomserver.db") as conn:
        conn.execute("PRAGMA user_version=99")
    database = Database(tmp_path / "roomserver.db")
    with pytest.raises(RuntimeError, match="schema version 99 is newer"):
        await database.open()
    await database.close()


async def test_a_data_folder_serves_one_server_at_a_time(tmp_path: Path) -> None:
    first, second = (create_app(ServerSettings(data_dir=tmp_path, insecure_no_auth=True)) for _ in range(2))
    async with first.router.lifespan_context(first):
        with pytest.raises(RuntimeError, match="in use by another roomserver"):
            async with second.router.lifespan_context(second):
                pass
    async with second.router.lifespan_context(second):  # free again once the first has stopped
        assert (tmp_path / "roomserver.db").exists()


def test_serve_warns_when_no_token_can_call_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    served: list[str] = []
    monkeypatch.setattr("roomserver.cli._Server.run", lambda self: served.append(self.config.host))
    result = CliRunner().invoke(app, ["serve", "--data", str(tmp_path)])
    assert result.exit_code == 0
    assert "no tokens" in result.output
    assert served == ["127.0.0.1"]
