"""`roomop up` as a user runs it (a subprocess with its own room server child), and `roomop status` /
`roomop audit` against a running operator."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from roomoperator.cli import app
from roomoperator.store import Store
from tests.service.conftest import EXAMPLES, Operator, room_spec
from tests.support.servers import free_port


async def test_status_and_audit_commands_read_a_running_operator(operator: Operator) -> None:
    applied = await operator.http.post("/apply", json=room_spec("room-svc-cli-1"))
    runner = CliRunner()
    shown = await asyncio.to_thread(
        runner.invoke, app, ["status", "--operator", operator.url, "--output", "json"]
    )
    assert shown.exit_code == 0, shown.output
    assert [room["roomId"] for room in json.loads(shown.output)["rooms"]] == ["room-svc-cli-1"]
    table = await asyncio.to_thread(runner.invoke, app, ["status", "--operator", operator.url])
    assert "room-svc-cli-1" in table.output
    cid = applied.json()["correlationId"]
    log = await asyncio.to_thread(
        runner.invoke,
        app,
        ["audit", "--operator", operator.url, "--correlation-id", cid],
        env={"COLUMNS": "160"},
    )
    assert log.exit_code == 0
    lines = log.output.splitlines()
    rows = [n for n, line in enumerate(lines) if "entityId=E-agent-0" in line]
    assert len(rows) == 1, log.output
    entry = " ".join(lines[rows[0] - 1 : rows[0] + 1])  # an entry's cells are stacked over lines
    assert all(word in entry for word in ("room-svc-cli-1", "entity.joined", "anonymous", cid[:8])), (
        log.output
    )
    raw = await asyncio.to_thread(
        runner.invoke, app, ["audit", "--operator", operator.url, "--correlation-id", cid, "-o", "json"]
    )
    assert {entry["correlationId"] for entry in json.loads(raw.output)["entries"]} == {cid}
    down = await asyncio.to_thread(
        runner.invoke, app, ["status", "--operator", f"http://127.0.0.1:{free_port()}"]
    )
    assert down.exit_code == 1
    assert "cannot reach the operator" in down.output


@pytest.mark.slow
def test_up_runs_both_services_applies_the_spec_and_stops_cleanly(tmp_path: Path) -> None:
    operator_port, server_port = free_port(), free_port()
    data = tmp_path / ".roomop"
    roomop = Path(sys.executable).parent / "roomop"
    command = [str(roomop), "up", str(EXAMPLES / "ai-lab.room.yaml"), "--data", str(data)]
    command += ["--operator-port", str(operator_port), "--server-port", str(server_port)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{operator_port}"
    streams = contextlib.ExitStack()
    try:
        deadline, ready = time.monotonic() + 60, False
        while time.monotonic() < deadline and not ready:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else ""
            with contextlib.suppress(httpx.TransportError, FileNotFoundError):
                token = json.loads((data / "credentials.json").read_text())["operator"]["apiToken"]
                reader = {"Authorization": f"Bearer {token}"}  # with auth on, reads need the token too
                answer = httpx.get(f"{url}/rooms/room-ai-lab-01", headers=reader, timeout=2)
                ready = (
                    answer.status_code == 200
                    and {c["type"]: c["status"] for c in answer.json()["conditions"]}.get("Ready") == "True"
                )
            time.sleep(0.1)  # another process's state: there is no event to await
        assert ready
        credentials = data / "credentials.json"
        assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
        tokens = json.loads(credentials.read_text())
        refused = httpx.post(f"{url}/rooms/room-ai-lab-01/reconcile", timeout=5)
        assert refused.status_code == 401
        headers = {"Authorization": f"Bearer {tokens['operator']['apiToken']}"}
        assert (
            httpx.post(f"{url}/rooms/room-ai-lab-01/reconcile", headers=headers, timeout=5).status_code == 202
        )
        admin = {"Authorization": f"Bearer {tokens['roomServer']['adminToken']}"}
        server = httpx.get(
            f"http://127.0.0.1:{server_port}/room/room-ai-lab-01/state", headers=admin, timeout=5
        )
        assert len(server.json()["entities"]) == 3
        events = streams.enter_context(httpx.stream("GET", f"{url}/events", headers=headers, timeout=30))
        assert next(events.iter_lines()) == "event: connected"  # an open stream must not delay the stop
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=20)[0].decode()
        streams.close()
    assert process.returncode == 0, output
    assert "stopped the operator and the room server" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{server_port}/health", timeout=2)


async def test_audit_follow_prints_live_entries_of_one_room(operator: Operator) -> None:
    roomop = Path(sys.executable).parent / "roomop"
    command = [
        "audit",
        "--follow",
        "--operator",
        operator.url,
        "--room",
        "room-svc-cli-2",
        "--action",
        "entity.joined",
    ]
    follower = await asyncio.create_subprocess_exec(str(roomop), *command, stdout=asyncio.subprocess.PIPE)
    assert follower.stdout is not None
    try:
        # Entries made before the follower connects come with the stream's replay: no race to lose.
        await operator.http.post("/apply", json=room_spec("room-svc-cli-2"))
        async with asyncio.timeout(20):
            lines = [(await follower.stdout.readline()).decode() for _ in range(2)]
        assert all(" room-svc-cli-2 entity.joined by anonymous entityId=E-agent-" in line for line in lines)
    finally:
        follower.terminate()
        await follower.wait()


def _roomop_up(data: Path, operator_port: int, server_port: int, *specs: Path) -> list[str]:
    roomop = Path(sys.executable).parent / "roomop"
    command = [str(roomop), "up", *map(str, specs), "--data", str(data)]
    return [*command, "--operator-port", str(operator_port), "--server-port", str(server_port)]


def _up_until_applied(command: list[str]) -> str:
    """Run `roomop up` until it has applied its files, then stop it; its output (lines unfolded)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    lines: list[str] = []
    try:
        for raw in process.stdout:  # each line as `roomop up` prints it: nothing to poll
            lines.append(raw.decode())
            if "Ctrl-C stops both services." in lines[-1]:
                break
    finally:
        process.send_signal(signal.SIGTERM)
        lines.append(process.communicate(timeout=20)[0].decode())
    output = " ".join("".join(lines).split())  # rich folds long lines
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_up_keeps_a_newer_revision_applied_through_the_api(tmp_path: Path) -> None:
    data, spec_file = tmp_path / ".roomop", tmp_path / "lab.room.json"
    operator_port, server_port = free_port(), free_port()
    url = f"http://127.0.0.1:{operator_port}"
    first = subprocess.Popen(
        _roomop_up(data, operator_port, server_port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline, up = time.monotonic() + 60, False
        while time.monotonic() < deadline and not up:
            assert first.poll() is None, first.stdout.read().decode() if first.stdout else ""
            with contextlib.suppress(httpx.TransportError):
                up = httpx.get(f"{url}/health", timeout=2).status_code == 200
            time.sleep(0.1)  # another process's state: there is no event to await
        assert up
        token = json.loads((data / "credentials.json").read_text())["operator"]["apiToken"]
        applied = httpx.post(
            f"{url}/apply",
            json=room_spec("room-up-lab", version=6),
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
    finally:
        first.send_signal(signal.SIGTERM)
        log = first.communicate(timeout=20)[0].decode()
    assert first.returncode == 0, log
    assert applied.status_code == 200, (applied.text, log)
    assert applied.json()["converged"] is True
    command = _roomop_up(data, operator_port, server_port, spec_file)
    spec_file.write_text(json.dumps(room_spec("room-up-lab", version=4, entities=3)))
    kept = _up_until_applied(command)
    kept_line = f"kept room-up-lab revision 1 (v6, by api); {spec_file} has v4"
    assert f"{kept_line}: `roomop up --force` re-applies the file" in kept, kept
    assert "stopped the operator and the room server" in kept

    async def desired() -> tuple[int | None, list[int]]:
        store = Store(f"sqlite:///{data / 'operator.db'}")
        try:
            room = await store.get_room("room-up-lab")
            assert room is not None
            return room.spec_version, [version.spec_version for version in await store.history("room-up-lab")]
        finally:
            await store.close()

    assert asyncio.run(desired()) == (6, [6])
    spec_file.write_text(json.dumps(room_spec("room-up-lab", version=7, entities=3)))
    assert "applied room-up-lab v7 revision 2: converged" in _up_until_applied(command)
    restarted = _up_until_applied(command)  # the same file again: no new revision
    assert "applied room-up-lab v7 revision 2 (unchanged): converged" in restarted, restarted
    assert asyncio.run(desired()) == (7, [6, 7])
