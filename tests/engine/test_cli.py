"""`roomop plan` / `roomop apply` as a user runs them (a subprocess, or typer's runner in a worker thread)
against the real room server: output, Terraform-like exit codes, and apply-what-you-confirmed."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from roomoperator.cli import app
from roomoperator.cli import engine as cli_engine
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.settings import RoomServerSettings
from tests.engine.conftest import fast_settings, room_spec
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
        "apply",
        "-f",
        str(spec),
        *server,
        "--yes",
        "-o",
        "json",
        "--detailed-exitcode",
        "--token",
        roomserver.token,
    )
    assert code == 2, out
    result = json.loads(out)
    assert (result["success"], result["converged"], result["phase"]) == (True, True, "VERIFY")

    again = await asyncio.to_thread(invoke, "plan", "-f", str(spec), *server, "--token", roomserver.token)
    assert again.exit_code == 0, again.output
    assert "No changes" in again.output
    noop = await asyncio.to_thread(
        invoke, "apply", "-f", str(spec), *server, "--yes", "--detailed-exitcode", "--token", roomserver.token
    )
    assert noop.exit_code == 0, noop.output

    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        state = await client.get_state("room-ai-lab-01")
    assert [a.name for a in state.artifacts] == ["project-plan", "research-data"]


async def test_errors_exit_1(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    bad_token = await asyncio.to_thread(
        invoke, "plan", "-f", str(EXAMPLE), "--server", roomserver.url, "--token", "bad-token-0123456789"
    )
    assert bad_token.exit_code == 1
    assert "room server refused the token it was given" in bad_token.output
    down = f"http://127.0.0.1:{free_port()}"
    unreachable = await asyncio.to_thread(invoke, "plan", "-f", str(EXAMPLE), "--server", down, "-o", "json")
    assert unreachable.exit_code == 1
    assert json.loads(unreachable.output)["code"] == "ROOM_SERVER_UNREACHABLE"
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: RoomSpec\nmetadata: {name: x, version: 1}\nspec: {roomId: r}\n")
    for command in ("plan", "apply"):
        invalid = await asyncio.to_thread(invoke, command, "-f", str(broken), "--server", roomserver.url)
        assert invalid.exit_code == 1
        assert "spec.roomId" in invalid.stderr
    settings = tmp_path / "settings.yaml"
    settings.write_text("nonsense: 1\n")
    misconfigured = await asyncio.to_thread(
        invoke, "plan", "-f", str(EXAMPLE), "--server", down, env={"ROOMOP_CONFIG": str(settings)}
    )
    assert misconfigured.exit_code == 1
    assert "configuration error" in misconfigured.stderr


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in this process (its own event loop, in a worker thread): quicker than a subprocess."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "200", "ROOM_AUTH_TOKEN": "", **(env or {})})


async def test_dry_run_and_confirm(roomserver: RoomServerHandle, tmp_path: Path, seeds: Path) -> None:
    crowd = [{"id": f"E-member-{i}", "kind": "human"} for i in range(4)]
    spec = seeds / "room.yaml"
    body = {"apiVersion": "v1", "kind": "RoomSpec", "metadata": {"name": "cli", "version": 1}}
    spec.write_text(json.dumps({**body, "spec": {"roomId": "room-cli-01", "entities": crowd}}))
    common = ("-f", str(spec), "--server", roomserver.url, "--token", roomserver.token)

    dry = await asyncio.to_thread(invoke, "apply", *common, "--dry-run", "-o", "json")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.output)["phase"] == "PRE_CHECKS"
    detailed = await asyncio.to_thread(invoke, "apply", *common, "--dry-run", "--detailed-exitcode")
    assert detailed.exit_code == 2, detailed.output
    applied = await asyncio.to_thread(invoke, "apply", *common, "--yes")
    assert applied.exit_code == 0, applied.output
    assert "4 applied, 0 failed: the room is converged." in applied.output

    spec.write_text(json.dumps({**body, "spec": {"roomId": "room-cli-01", "entities": crowd[:1]}}))
    refused = await asyncio.to_thread(invoke, "apply", *common, "--yes")
    assert refused.exit_code == 1
    assert "Change ratio (75%) exceeds threshold (50%). X-Confirm:true header required." in refused.output
    planned = await asyncio.to_thread(invoke, "plan", *common)
    assert planned.exit_code == 1  # a plan the guardrails refuse cannot be applied as it is
    assert "3 to apply (3 kick)" in planned.output
    assert "Change ratio (75%) exceeds threshold (50%)" in planned.output
    assert (await asyncio.to_thread(invoke, "plan", *common, "--confirm")).exit_code == 2
    confirmed = await asyncio.to_thread(invoke, "apply", *common, "--yes", "--confirm", "--detailed-exitcode")
    assert confirmed.exit_code == 2, confirmed.output
    assert "High change ratio (75%) detected but confirmed" in confirmed.output


def rooms_file(path: Path, *rooms: dict[str, Any]) -> Path:
    """A spec file declaring several rooms (YAML documents, each written as JSON)."""
    path.write_text("---\n".join(json.dumps(room) + "\n" for room in rooms))
    return path


def room(room_id: str, entities: list[dict[str, Any]], **body: Any) -> dict[str, Any]:
    metadata = {"name": "cli", "version": 1}
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": metadata,
        "spec": {"roomId": room_id, "entities": entities, **body},
    }


CROWD = [{"id": f"E-member-{i}", "kind": "human"} for i in range(4)]


async def test_one_failing_room_makes_the_whole_command_fail(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    common = ("--server", roomserver.url, "--token", roomserver.token)
    full = rooms_file(tmp_path / "full.yaml", room("room-cli-aa", CROWD))
    assert (await asyncio.to_thread(invoke, "apply", "-f", str(full), *common, "--yes")).exit_code == 0
    # room-cli-aa: the guardrails refuse 3 kicks of 4; room-cli-bb: one entity to join
    refused = rooms_file(
        tmp_path / "refused.yaml", room("room-cli-aa", CROWD[:1]), room("room-cli-bb", CROWD[:1])
    )
    planned = await asyncio.to_thread(invoke, "plan", "-f", str(refused), *common)
    assert planned.exit_code == 1, planned.output
    assert "Plan for room room-cli-aa" in planned.output
    assert "Plan for room room-cli-bb" in planned.output
    applied = await asyncio.to_thread(
        invoke, "apply", "-f", str(refused), *common, "--yes", "--detailed-exitcode"
    )
    assert applied.exit_code == 1, applied.output
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        assert (await client.get_state("room-cli-bb")).entities == ()  # a refused plan applies nothing

    # room-cli-cc plans (its resource is blocked, fatally) but fails at APPLY; room-cli-bb changes
    broken = room("room-cli-cc", CROWD[:1], resources=[{"name": "tool", "type": "mcp-tool"}])
    mixed = rooms_file(tmp_path / "mixed.yaml", broken, room("room-cli-bb", CROWD[:1]))
    features = {"ROOMOP_FEATURES__RESOURCES": "true"}
    planned = await asyncio.to_thread(invoke, "plan", "-f", str(mixed), *common, env=features)
    assert planned.exit_code == 2, planned.output
    applied = await asyncio.to_thread(
        invoke, "apply", "-f", str(mixed), *common, "--yes", "--detailed-exitcode", "-o", "json", env=features
    )
    assert applied.exit_code == 1, applied.output
    results = json.loads(applied.output)
    assert [(r["roomId"], r["success"], r["code"]) for r in results] == [
        ("room-cli-cc", False, "ITEMS_FAILED"),
        ("room-cli-bb", True, None),
    ]
    assert results[1]["applied"] == ["join:E-member-0"]


async def test_apply_applies_the_plan_that_was_confirmed(
    roomserver: RoomServerHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = rooms_file(tmp_path / "room.yaml", room("room-cli-01", CROWD[:2]))
    test_loop = asyncio.get_running_loop()

    async def change_the_room() -> int:
        async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
            reconciler = Reconciler(client, fast_settings())
            assert (
                await reconciler.reconcile(room_spec("room-cli-01", entities=CROWD[:1]), seed_root=tmp_path)
            ).success
            return (await client.get_state("room-cli-01")).revision

    revisions: list[int] = []

    def someone_changes_the_room_while_asked(*, err: bool) -> None:
        assert not err
        revisions.append(asyncio.run_coroutine_threadsafe(change_the_room(), test_loop).result())

    monkeypatch.setattr(cli_engine, "ask_to_apply", someone_changes_the_room_while_asked)
    applied = await asyncio.to_thread(
        invoke, "apply", "-f", str(spec), "--server", roomserver.url, "--token", roomserver.token
    )
    assert applied.exit_code == 1, applied.output
    shown, _, after = applied.output.partition("changed since its plan was shown")
    assert "2 to apply (2 join)" in shown
    assert "1 to apply (1 join)" in after
    assert "E-member-0" not in after
    assert "roomop apply` again" in after
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        state = await client.get_state("room-cli-01")
    assert (state.revision, [e.id for e in state.entities]) == (revisions[0], ["E-member-0"])


STUDIO = EXAMPLE.parent / "product-studio.room.yaml"


async def test_plan_shows_the_resources_it_skips_and_why(roomserver: RoomServerHandle) -> None:
    common = ("-f", str(STUDIO), "--server", roomserver.url, "--token", roomserver.token)
    shown = await asyncio.to_thread(invoke, "plan", *common, env={"COLUMNS": "250"})
    assert shown.exit_code == 2, shown.output
    skipped = [line for line in shown.output.splitlines() if "SKIPPED FEATURE_DISABLED" in line]
    assert len(skipped) == 3, shown.output
    assert "3 resources skipped: features.resources is off" in shown.output
    planned = await asyncio.to_thread(invoke, "plan", *common, "-o", "json")
    assert [s["name"] for s in json.loads(planned.output)["skipped"]] == [
        "web.search@studio",
        "code.execute@studio",
        "design.render@studio",
    ]


async def test_apply_shows_a_progress_bar_on_a_terminal(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    crowd = [{"id": f"E-member-{i}", "kind": "human"} for i in range(120)]
    spec = rooms_file(tmp_path / "crowd.yaml", room("room-cli-progress", crowd))
    (room_of_file,) = cli_engine._rooms(spec)
    screen = io.StringIO()
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        # Single writes, so the bar has steps to show (a batch makes the 120 joins in one request).
        reconciler = Reconciler(client, fast_settings(room_server=RoomServerSettings(batch=False)))
        (preview,) = await cli_engine.plan_rooms(reconciler, [room_of_file], confirm=False)
        console = Console(file=screen, force_terminal=True, width=100)
        result = await cli_engine.apply_room(
            reconciler, room_of_file, preview, confirm=False, console=console
        )
    assert result.converged
    assert len(result.applied) == 120
    assert "room room-cli-progress: apply" in screen.getvalue()
    assert re.search(r"\b\d+/120\b", screen.getvalue())  # the bar counts the changes made
