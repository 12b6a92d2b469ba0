"""`roomop plan` / `roomop apply` as a user runs them (a subprocess) against the real room server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

from typer.testing import CliRunner, Result

from roomoperator.cli import app
from roomoperator.clients.roomserver import RoomServerClient
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "specs" / "ai-lab.room.yaml"


async def roomop(*args: str, token: str | None = None) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMOP_") and k != "RoomServer__BaseUrl"}
    env.pop("ROOM_AUTH_TOKEN", None)
    if token is not None:
        env["ROOM_AUTH_TOKEN"] = token
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from roomoperator.cli import main; main()",
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**env, "COLUMNS": "200"},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_plan_apply_plan(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    spec = tmp_path / "ai-lab.room.yaml"
    shutil.copy(EXAMPLE, spec)
    shutil.copytree(EXAMPLE.parent / "seeds", tmp_path / "seeds")
    server = ("--server", roomserver.url)

    code, out, _ = await roomop("plan", "-f", str(spec), *server, token=roomserver.token)
    assert code == 2, out
    assert "E-orchestrator-main" in out
    assert "to apply" in out

    planned = await asyncio.to_thread(
        invoke, "plan", "-f", str(spec), *server, "-o", "json", "--token", roomserver.token
    )
    assert planned.exit_code == 2
    plan = json.loads(planned.output)
    assert plan["formatVersion"] == "1.0"
    assert plan["diff"]["toJoin"] == ["E-orchestrator-main", "E-agent-researcher", "E-human-owner"]
    assert plan["diff"]["toPromote"] == ["research-data"]

    unattended = await asyncio.to_thread(
        invoke, "apply", "-f", str(spec), *server, "--token", roomserver.token
    )
    assert unattended.exit_code == 1
    assert "pass --yes" in unattended.output

    code, out, _ = await roomop(
        "apply", "-f", str(spec), *server, "--yes", "--output", "json", "--token", roomserver.token
    )
    assert code == 2, out
    result = json.loads(out)
    assert (result["success"], result["converged"], result["phase"]) == (True, True, "VERIFY")

    again = await asyncio.to_thread(invoke, "plan", "-f", str(spec), *server, "--token", roomserver.token)
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    noop = await asyncio.to_thread(
        invoke, "apply", "-f", str(spec), *server, "--yes", "--token", roomserver.token
    )
    assert noop.exit_code == 0

    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        state = await client.get_state("ai-lab-01")
    assert [a.name for a in state.artifacts] == ["project-plan", "research-data"]


async def test_errors_exit_1(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    bad_token = await asyncio.to_thread(
        invoke, "plan", "-f", str(EXAMPLE), "--server", roomserver.url, "--token", "bad-token-0123456789"
    )
    assert bad_token.exit_code == 1
    assert "refused the operator's token" in bad_token.output
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = await asyncio.to_thread(invoke, "plan", "-f", str(EXAMPLE), "--server", down, "-o", "json")
    assert unreachable.exit_code == 1
    assert json.loads(unreachable.output)["code"] == "ROOM_SERVER_UNREACHABLE"
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: RoomSpec\nmetadata: {name: x, version: 1}\nspec: {roomId: r}\n")
    invalid = await asyncio.to_thread(invoke, "plan", "-f", str(broken), "--server", roomserver.url)
    assert invalid.exit_code == 1
    assert "roomId" in invalid.stderr


def invoke(*args: str) -> Result:
    """The CLI in this process (its own event loop, in a worker thread): quicker than a subprocess."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "ROOM_AUTH_TOKEN": ""})


async def test_dry_run_and_confirm(roomserver: RoomServerHandle, tmp_path: Path, seeds: Path) -> None:
    crowd = [{"id": f"E-member-{i}", "kind": "human"} for i in range(4)]
    spec = seeds / "room.yaml"
    body = {"apiVersion": "v1", "kind": "RoomSpec", "metadata": {"name": "cli", "version": 1}}
    spec.write_text(json.dumps({**body, "spec": {"roomId": "room-cli-1", "entities": crowd}}))
    common = ("-f", str(spec), "--server", roomserver.url, "--token", roomserver.token)

    dry = await asyncio.to_thread(invoke, "apply", *common, "--dry-run", "-o", "json")
    assert dry.exit_code == 2, dry.output
    assert json.loads(dry.output)["phase"] == "PRE_CHECKS"
    applied = await asyncio.to_thread(invoke, "apply", *common, "--yes")
    assert applied.exit_code == 2, applied.output
    assert "4 applied, 0 failed: the room is converged." in applied.output

    spec.write_text(json.dumps({**body, "spec": {"roomId": "room-cli-1", "entities": crowd[:1]}}))
    refused = await asyncio.to_thread(invoke, "apply", *common, "--yes")
    assert refused.exit_code == 1
    assert "Change ratio (75%) exceeds threshold (50%). X-Confirm:true header required." in refused.output
    planned = await asyncio.to_thread(invoke, "plan", *common)
    assert planned.exit_code == 2  # plan shows the refusal but is not an error
    confirmed = await asyncio.to_thread(invoke, "apply", *common, "--yes", "--confirm")
    assert confirmed.exit_code == 2, confirmed.output
    assert "High change ratio (75%) detected but confirmed" in confirmed.output
