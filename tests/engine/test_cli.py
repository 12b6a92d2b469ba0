"""`roomop plan` / `roomop apply` as a user runs them (a subprocess) against the real room server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

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

    code, out, _ = await roomop("plan", "-f", str(spec), *server, "--output", "json", token=roomserver.token)
    assert code == 2
    plan = json.loads(out)
    assert plan["formatVersion"] == "1.0"
    assert plan["diff"]["toJoin"] == ["E-orchestrator-main", "E-agent-researcher", "E-human-owner"]
    assert plan["diff"]["toPromote"] == ["research-data"]

    code, out, _ = await roomop("apply", "-f", str(spec), *server, token=roomserver.token)
    assert code == 1
    assert "pass --yes" in out

    code, out, _ = await roomop(
        "apply", "-f", str(spec), *server, "--yes", "--output", "json", "--token", roomserver.token
    )
    assert code == 2, out
    result = json.loads(out)
    assert (result["success"], result["converged"], result["phase"]) == (True, True, "VERIFY")

    code, out, _ = await roomop("plan", "-f", str(spec), *server, token=roomserver.token)
    assert code == 0, out
    assert "No changes" in out
    code, _, _ = await roomop("apply", "-f", str(spec), *server, "--yes", token=roomserver.token)
    assert code == 0

    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        state = await client.get_state("ai-lab-01")
    assert [a.name for a in state.artifacts] == ["project-plan", "research-data"]


async def test_errors_exit_1(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    code, out, _ = await roomop(
        "plan", "-f", str(EXAMPLE), "--server", roomserver.url, token="bad-token-0123456789"
    )
    assert code == 1
    assert "token" in out
    down = f"http://127.0.0.1:{free_port()}"
    code, out, _ = await roomop("plan", "-f", str(EXAMPLE), "--server", down, "-o", "json", token="x")
    assert code == 1
    assert json.loads(out)["code"] == "ROOM_SERVER_UNREACHABLE"
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: RoomSpec\nmetadata: {name: x, version: 1}\nspec: {roomId: r}\n")
    code, _, err = await roomop("plan", "-f", str(broken), "--server", roomserver.url, token=roomserver.token)
    assert code == 1
    assert "roomId" in err
