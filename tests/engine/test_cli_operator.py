"""`roomop plan --operator` and `roomop apply --operator` against the real operator and room server: the
spec goes with its seed files to the operator, which plans, applies and keeps the room; the CLI renders
its answers and exits as the one-shot path does."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import httpx
from pydantic import SecretStr

from tests.engine.test_cli import EXAMPLE, invoke
from tests.service.conftest import operator_settings, running_operator
from tests.support.roomserver import RoomServerHandle

BARE = {"apiVersion": "v1", "kind": "RoomSpec", "metadata": {"name": "bare", "version": 1}}


def example_folder(tmp_path: Path) -> Path:
    """The shipped example and its seeds, copied to a folder of their own; the spec file's path."""
    folder = tmp_path / "project"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / EXAMPLE.name)
    shutil.copytree(EXAMPLE.parent / "seeds", folder / "seeds")
    return folder / EXAMPLE.name


async def test_plan_and_apply_through_the_operator(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    spec = example_folder(tmp_path)
    # The operator reads no seed from its own disk: the CLI sends them.
    settings = operator_settings(roomserver, tmp_path / "operator", seeds={"roots": []})
    (tmp_path / "operator").mkdir()
    async with running_operator(settings) as op:
        via = ("-f", str(spec), "--operator", op.url)
        planned = await asyncio.to_thread(invoke, "plan", *via)
        assert planned.exit_code == 2, planned.output
        assert "E-orchestrator-main" in planned.output
        assert "to apply" in planned.output
        assert (await op.http.get("/rooms/room-ai-lab-01")).status_code == 404  # a dry run manages nothing

        as_json = await asyncio.to_thread(invoke, "plan", *via, "-o", "json")
        assert as_json.exit_code == 2
        assert json.loads(as_json.output)["diff"]["toSeed"] == ["project-plan", "research-data"]

        unattended = await asyncio.to_thread(invoke, "apply", *via)
        assert unattended.exit_code == 1
        assert "pass --yes" in unattended.output

        applied = await asyncio.to_thread(invoke, "apply", *via, "--yes", "--detailed-exitcode")
        assert applied.exit_code == 2, applied.output
        assert "converged" in applied.output
        room = (await op.http.get("/rooms/room-ai-lab-01")).json()
        assert room["managed"] is True
        headers = {"Authorization": f"Bearer {roomserver.admin_token}"}
        async with httpx.AsyncClient(base_url=roomserver.url, headers=headers) as admin:
            state = (await admin.get("/room/room-ai-lab-01/state")).json()
        digests = {artifact["name"]: artifact["sha256"] for artifact in state["artifacts"]}
        folder = spec.parent / "seeds"
        assert digests == {
            "project-plan": hashlib.sha256((folder / "project-plan.md").read_bytes()).hexdigest(),
            "research-data": hashlib.sha256((folder / "research-data.json").read_bytes()).hexdigest(),
        }

        again = await asyncio.to_thread(invoke, "plan", *via)
        assert again.exit_code == 0, again.output
        assert "No changes" in again.output
        noop = await asyncio.to_thread(invoke, "apply", *via, "--yes", "-o", "json", "--detailed-exitcode")
        assert noop.exit_code == 0, noop.output


async def test_operator_errors_say_what_to_do(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    spec = example_folder(tmp_path)
    settings = operator_settings(roomserver, tmp_path, api={"token": SecretStr("api-token-0123456789")})
    async with running_operator(settings) as op:
        via = ("-f", str(spec), "--operator", op.url)
        both = await asyncio.to_thread(invoke, "plan", *via, "--server", roomserver.url)
        assert both.exit_code == 1
        assert "--operator and --server name two different paths" in both.output

        no_token = await asyncio.to_thread(invoke, "plan", *via)
        assert no_token.exit_code == 1
        assert "needs a token and none was given" in no_token.output
        assert "credentials.json" in no_token.output
        assert "--token or ROOMOP_API_TOKEN" in no_token.output

        by_option = await asyncio.to_thread(invoke, "plan", *via, "--token", "api-token-0123456789")
        assert by_option.exit_code == 2, by_option.output
        by_env = await asyncio.to_thread(
            invoke, "plan", *via, env={"ROOMOP_API_TOKEN": "api-token-0123456789"}
        )
        assert by_env.exit_code == 2, by_env.output

        (spec.parent / "seeds" / "project-plan.md").unlink()
        (spec.parent / "seeds" / "project-plan.md").symlink_to(tmp_path / "operator.db")
        escaping = await asyncio.to_thread(invoke, "plan", *via, "--token", "api-token-0123456789")
        assert escaping.exit_code == 1
        assert "spec.artifacts[0].seedFrom" in escaping.output  # refused as the one-shot path does
        assert "leads out of it through a symlink" in escaping.output
        (spec.parent / "seeds" / "project-plan.md").unlink()
        missing = await asyncio.to_thread(invoke, "plan", *via, "--token", "api-token-0123456789")
        assert missing.exit_code == 1
        assert "spec.artifacts[0].seedFrom './seeds/project-plan.md': cannot read the file" in missing.output
        assert "nothing was sent" in missing.output

    bare = tmp_path / "bare.room.json"
    bare.write_text(json.dumps({**BARE, "spec": {"roomId": "room-bare-1"}}))
    unreachable = await asyncio.to_thread(invoke, "plan", "-f", str(bare), "--operator", op.url)
    assert unreachable.exit_code == 1
    assert f"cannot reach the operator at {op.url}" in unreachable.output
