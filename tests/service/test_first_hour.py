"""A new user's first hour (issue 10), each trap a guard: `roomop up` as a subprocess (what its tokens
are for, one log line per change and per drift, one line per conflict, a supervised room server), the
operator's URL given as a room server's, resources skipped with their reason, and `roomop audit`."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from structlog.testing import capture_logs
from typer.testing import CliRunner

from roomoperator.cli import app
from roomoperator.cli.remote import ThroughOperator
from roomoperator.cli.rendering import plan_summary, plan_table
from roomoperator.clients.errors import Rejected
from roomoperator.clients.operator import OperatorClient
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.backoff import Backoff
from roomoperator.model.observed import ObservedRoom
from roomoperator.model.results import RunResult
from roomoperator.planning.planjson import plan_to_json
from roomoperator.planning.planner import plan_room
from roomoperator.service.launching import RESTARTS_BEFORE_GIVING_UP, LaunchError, RoomServerChild
from roomoperator.service.observing import LogObserver, RoomStalled, RunFinished
from roomoperator.service.runs import RunRequest
from roomoperator.spec.loading import load_file
from tests.service.conftest import EXAMPLES, Operator, room_spec
from tests.support.servers import free_port

ROOMOP = Path(sys.executable).parent / "roomop"
STUDIO = EXAMPLES / "product-studio.room.yaml"


@dataclass
class Up:
    """`roomop up` in a subprocess (stdout and stderr merged, not a terminal) and every line it printed."""

    process: subprocess.Popen[str]
    data: Path
    operator_url: str
    server_port: int
    operator_port: int
    lines: list[str] = field(default_factory=list)
    _new: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)
            self._new.put(line)
        self._new.put(None)

    def wait_for(self, pattern: str, *, within: float = 60.0) -> str:
        """The first line from now on that matches `pattern` (each line is awaited as printed)."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._new.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r} within {within} s:\n{''.join(self.lines)}")

    @property
    def token(self) -> str:
        token: str = json.loads((self.data / "credentials.json").read_text())["operator"]["apiToken"]
        return token

    @property
    def admin_token(self) -> str:
        token: str = json.loads((self.data / "credentials.json").read_text())["roomServer"]["adminToken"]
        return token


def _up_command(data: Path, operator_port: int, server_port: int, *specs: Path) -> list[str]:
    command = [str(ROOMOP), "up", *map(str, specs), "--data", str(data)]
    return [*command, "--operator-port", str(operator_port), "--server-port", str(server_port)]


def _quiet_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMOP_") and k != "ROOM_AUTH_TOKEN"}
    return {**env, "COLUMNS": "200", "ROOMOP_RECONCILIATION__INTERVAL_SECONDS": "1"}


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    data = tmp_path_factory.mktemp("first-hour") / ".roomop"
    operator_port, server_port = free_port(), free_port()
    process = subprocess.Popen(
        _up_command(data, operator_port, server_port, EXAMPLES / "ai-lab.room.yaml"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=_quiet_env(),
    )
    handle = Up(process, data, f"http://127.0.0.1:{operator_port}", server_port, operator_port)
    reader = threading.Thread(target=handle.read, daemon=True)
    reader.start()
    try:
        handle.wait_for(r"^Ctrl-C stops both services")
        yield handle
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
        reader.join(timeout=10)


def _log_events(lines: list[str]) -> list[dict[str, Any]]:
    events = []
    for line in lines:
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and "event" in document:
                events.append(document)
    return events


@pytest.mark.slow
def test_up_says_what_each_token_is_for_and_where_a_401_finds_it(up: Up) -> None:
    output = "".join(up.lines)
    assert "operator.apiToken: the operator API token: POST /apply" in output
    assert "(as ROOMOP_API_TOKEN)" in output
    assert "roomServer.adminToken: the room server admin token" in output
    assert "(as ROOM_AUTH_TOKEN)" in output
    assert up.token not in output
    assert up.admin_token not in output
    refused = httpx.post(f"{up.operator_url}/apply", json=room_spec("room-first-1"), timeout=10)
    assert refused.status_code == 401
    assert "operator.apiToken" in refused.json()["message"]
    assert "credentials.json" in refused.json()["message"]


@pytest.mark.slow
def test_up_logs_each_change_and_each_drift_corrected_as_json_and_to_its_log_file(up: Up) -> None:
    applied = [e for e in _log_events(up.lines) if e["event"] == "room changed"]
    assert [(e["room_id"], e["trigger"]) for e in applied] == [("room-ai-lab-01", "apply")]
    admin = {"Authorization": f"Bearer {up.admin_token}"}
    server = f"http://127.0.0.1:{up.server_port}"
    kicked = httpx.delete(f"{server}/room/room-ai-lab-01/entities/E-agent-researcher", headers=admin)
    assert kicked.status_code == 204
    line = json.loads(up.wait_for(r'"event": "drift corrected"'))
    assert line["room_id"] == "room-ai-lab-01"
    assert line["applied"] == 1
    assert line["level"] == "info"
    logged = _log_events((up.data / "operator.log").read_text().splitlines())
    assert {"room changed", "drift corrected"} <= {e["event"] for e in logged}
    assert not any(json.dumps(e).count("RoomServer") for e in logged)  # plain events, no tables


@pytest.mark.slow
def test_a_second_up_names_the_conflict_in_one_line(up: Up, tmp_path: Path) -> None:
    def second(*command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=_quiet_env())

    same = second(*_up_command(up.data, up.operator_port, up.server_port))
    other_ports = second(*_up_command(up.data, free_port(), free_port()))
    for answer in (same, other_ports):
        assert answer.returncode == 1
        assert answer.stdout + answer.stderr == (
            f"another `roomop up` (pid {up.process.pid}) is using the data folder {up.data}: stop it"
            " (Ctrl-C there), or give this one another folder with --data\n"
        )
    taken = second(*_up_command(tmp_path / "other", free_port(), up.server_port))
    assert taken.returncode == 1
    assert (taken.stdout + taken.stderr).count("\n") == 1
    assert f"port {up.server_port} on 127.0.0.1 (--server-port) is already in use" in taken.stderr
    assert not (tmp_path / "other" / "credentials.json").exists()  # refused before anything was made


@pytest.mark.slow
def test_the_operator_url_given_as_a_room_server_is_named_as_such(up: Up) -> None:
    planned = CliRunner().invoke(
        app, ["plan", "-f", str(STUDIO), "--server", up.operator_url, "--token", "x"], env={"COLUMNS": "300"}
    )
    assert planned.exit_code == 1
    assert "NOT_A_ROOM_SERVER" in planned.output
    said = " ".join(planned.output.split())
    assert f"not a room server: to go through that operator pass --operator {up.operator_url}" in said
    assert "Plan for room" not in planned.output


@pytest.mark.slow
def test_up_restarts_a_room_server_killed_with_sigkill(up: Up) -> None:
    started = re.search(r"room server: \S+ \(pid (\d+)", "".join(up.lines))
    assert started is not None
    child = int(started.group(1))
    assert os.getpgid(child) == child  # its own session: a terminal's Ctrl-C reaches `roomop up` only
    os.kill(child, signal.SIGKILL)
    assert "killed by signal 9: restarting it in" in up.wait_for(r"restarting it in")
    back = json.loads(up.wait_for(r"the room server is back on"))
    assert back["level"] == "info"
    with pytest.raises(ChildProcessError):
        os.waitpid(child, os.WNOHANG)  # not our child; and no zombie left with `roomop up`
    assert not Path(f"/proc/{child}").exists()
    deadline, healthy = time.monotonic() + 30, False
    while time.monotonic() < deadline and not healthy:
        healthy = httpx.get(f"{up.operator_url}/health", timeout=5).status_code == 200
        time.sleep(0.2)  # the operator's next health probe: no event to await from outside
    assert healthy
    logged = [e["event"] for e in _log_events((up.data / "operator.log").read_text().splitlines())]
    assert any("restarting it in" in event for event in logged)


@pytest.mark.slow
def test_up_stops_on_a_line_of_its_own_without_a_traceback(up: Up) -> None:
    up.process.send_signal(signal.SIGINT)
    assert up.process.wait(timeout=30) == 0
    up.wait_for(r"^stopped the operator and the room server$")
    assert "Traceback" not in (up.data / "roomserver.log").read_text()
    assert (up.data / "roomop.lock").read_text() == ""  # released (the kernel drops the flock anyway)


@pytest.mark.slow
async def test_supervision_gives_up_on_a_room_server_that_keeps_exiting(tmp_path: Path) -> None:
    child = RoomServerChild(tmp_path, host="127.0.0.1", port=free_port(), tokens_file=None)
    await child.start()
    first = child.process
    assert first is not None
    (tmp_path / "roomserver").rename(tmp_path / "moved")
    (tmp_path / "roomserver").write_text("a file where the data folder was")  # every restart fails
    supervisor = asyncio.create_task(child.supervise(backoff=Backoff(0.01, 0.05)))
    first.kill()
    try:
        with capture_logs() as logs:
            async with asyncio.timeout(120):
                with pytest.raises(LaunchError) as gave_up:
                    await supervisor
    finally:
        await child.stop()
    assert f"{RESTARTS_BEFORE_GIVING_UP} restarts in a row did not hold): stopping" in str(gave_up.value)
    restarts = [entry["restart"] for entry in logs if "restarting it in" in entry["event"]]
    assert restarts == list(range(1, RESTARTS_BEFORE_GIVING_UP + 1))


# ---- resources while features.resources is off ----------------------------------------------------


def test_resources_of_a_spec_are_shown_skipped_with_the_reason() -> None:
    (studio,) = load_file(STUDIO)
    plan = plan_room(studio.spec, ObservedRoom(room_id=studio.spec.room_id), seeds={})
    body = plan_to_json(plan)
    assert [(s["kind"], s["code"]) for s in body["skipped"]] == [("resource", "FEATURE_DISABLED")] * 3
    assert all("features.resources is off" in s["reason"] for s in body["skipped"])
    assert body["summary"]["ensure-resource"] == 0
    assert body["diff"]["toLoad"] == []
    assert "; 3 resources skipped: features.resources is off" in plan_summary(body)
    table = Console(width=200, file=io.StringIO())
    table.print(plan_table(body))
    rows = [line for line in table.file.getvalue().splitlines() if " skip " in line]  # type: ignore[attr-defined]
    assert len(rows) == 3
    assert all("SKIPPED FEATURE_DISABLED" in row for row in rows)
    enabled = plan_room(studio.spec, ObservedRoom(room_id=studio.spec.room_id), seeds={}, resources=True)
    assert plan_to_json(enabled)["skipped"] == []
    nothing = {**body, "changes": [], "summary": {**body["summary"], "total": 0, "blocked": 0}}
    assert plan_summary(nothing).startswith("No changes. The room matches its spec. 3 resources skipped:")


# ---- the operator's URL as a room server's, and audit --------------------------------------------


async def test_the_room_server_client_refuses_an_operator_url(operator: Operator) -> None:
    async with RoomServerClient(operator.url) as client:
        with pytest.raises(Rejected) as refused:
            await client.get_state("room-first-2")
    assert refused.value.code == "NOT_A_ROOM_SERVER"
    assert f"--operator {operator.url}" in refused.value.message


async def test_audit_follow_honours_count_and_has_no_short_f(operator: Operator) -> None:
    await operator.http.post("/apply", json=room_spec("room-first-3", entities=4))
    runner = CliRunner()
    short = await asyncio.to_thread(runner.invoke, app, ["audit", "-f", "--operator", operator.url])
    assert short.exit_code == 2
    assert "No such option: -f" in short.output
    command = [str(ROOMOP), "audit", "--follow", "--count", "2", "--operator", operator.url]
    command += ["--room", "room-first-3", "--action", "entity.joined"]
    follower = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE)
    assert follower.stdout is not None
    try:
        async with asyncio.timeout(20):
            shown = [(await follower.stdout.readline()).decode() for _ in range(2)]
            await operator.http.post("/apply", json=room_spec("room-first-3", version=2, entities=5))
            live = (await follower.stdout.readline()).decode()
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1):  # the replayed older entries are not printed again
                await follower.stdout.readline()
    finally:
        follower.terminate()
        await follower.wait()
    assert all("room-first-3 entity.joined" in line for line in [*shown, live])
    assert "entityId=E-agent-4" in live
    assert len({re.findall(r"entityId=E-agent-\d", line)[0] for line in shown}) == 2


async def test_audit_table_at_80_columns_keeps_ids_whole(operator: Operator) -> None:
    await operator.http.post("/apply", json=room_spec("room-first-4-long-name", entities=2, artifacts=1))
    table = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["audit", "--operator", operator.url, "--room", "room-first-4-long-name"],
        env={"COLUMNS": "80"},
    )
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert max(len(line) for line in lines) <= 80
    for whole in ("room-first-4-long-name", "entityId=E-agent-0", "entity.joined", "artifactName=doc-0"):
        assert any(whole in line for line in lines), table.output
    assert "…" in table.output  # digests are cut, not folded


def test_help_shows_flags_without_a_bool_placeholder() -> None:
    for command in ("apply", "rollback", "audit", "up"):
        shown = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "120"})
        assert shown.exit_code == 0
        assert "<bool>" not in shown.output
        assert re.search(r"--(yes|follow|force)\b", shown.output)


async def test_apply_through_the_operator_shows_the_run_on_a_terminal(
    operator: Operator, tmp_path: Path
) -> None:
    spec = tmp_path / "room.json"
    spec.write_text(json.dumps(room_spec("room-first-5", entities=3)))
    (loaded,) = load_file(spec)

    @dataclass(frozen=True)
    class _Room:
        loaded: Any
        seed_root: Path

    room = _Room(loaded, tmp_path)
    screen = io.StringIO()
    async with OperatorClient(operator.url) as client:
        through = ThroughOperator(client)
        (preview,) = await through.plan([room], confirm=False)
        result: RunResult = await through.apply(
            room, preview, confirm=False, console=Console(file=screen, force_terminal=True, width=120)
        )
    assert result.converged
    assert f"room room-first-5: sent to {operator.url}" in screen.getvalue()


async def test_the_log_observer_writes_one_line_per_change_failure_and_stall() -> None:
    def result(**fields: Any) -> RunResult:
        base = {"success": True, "correlationId": "c1", "roomId": "room-first-6", "specVersion": 2}
        return RunResult.model_validate(
            {**base, "phase": "VERIFY", "startedAt": "2026-01-01T00:00:00Z", **fields}
        )

    observer = LogObserver()
    loop_run = RunRequest.of("room-first-6", "loop")
    with capture_logs() as logs:
        await observer.observe(RunFinished(loop_run, result(), changed=False))  # quiet: no line
        await observer.observe(RunFinished(loop_run, result(applied=["join:E-a"]), changed=True))
        failed = result(success=False, code="ROOM_SERVER_UNREACHABLE", errors=["cannot connect"])
        await observer.observe(RunFinished(RunRequest.of("room-first-6", "apply"), failed, changed=False))
        await observer.observe(RoomStalled(failed, cycles_since_converged=5))
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("drift corrected", "info"),
        ("run failed", "warning"),
        ("room stalled", "warning"),
    ]
    assert logs[1]["code"] == "ROOM_SERVER_UNREACHABLE"
    assert logs[1]["errors"] == ["cannot connect"]
