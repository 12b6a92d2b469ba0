"""Desired state with the real operator and room server: revisions and the version rule, one order for
concurrent applies, protection that outlives the spec, and restoring a revision with its own seed bytes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from roomoperator.cli import app
from roomoperator.planning.planjson import changes_digest
from roomoperator.spec.loading import load_data
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator
from tests.support.roomserver import RoomServerHandle, running_roomserver
from tests.support.servers import free_port


async def test_the_version_rule_unchanged_same_version_lower_and_forced(operator: Operator) -> None:
    first = await operator.http.post("/apply", json=room_spec("room-rule-1", version=3))
    assert (first.status_code, first.json()["revision"], first.json()["unchanged"]) == (200, 1, False)
    again = await operator.http.post("/apply", json=room_spec("room-rule-1", version=3))
    assert (again.status_code, again.json()["revision"], again.json()["unchanged"]) == (200, 1, True)
    edited = await operator.http.post("/apply", json=room_spec("room-rule-1", version=3, entities=3))
    assert (edited.status_code, edited.json()["revision"]) == (200, 2)
    assert (
        "Version 3 is unchanged but the spec changed: accepted as a new revision" in edited.json()["warnings"]
    )
    lower = await operator.http.post("/apply", json=room_spec("room-rule-1", version=2))
    assert lower.status_code == 409
    body = lower.json()
    assert (body["code"], body["offeredVersion"], body["currentVersion"], body["currentRevision"]) == (
        "SPEC_VERSION_REGRESSION", 2, 3, 2,
    )  # fmt: skip
    assert "New version (2) is lower than current version (3)" in body["errors"][0]
    forced = await operator.http.post(
        "/apply", json=room_spec("room-rule-1", version=2), headers={"X-Force": "true"}
    )
    assert (forced.status_code, forced.json()["revision"]) == (200, 3)
    assert "Forced: version 2 replaces the higher version 3" in forced.json()["warnings"]
    run = (await operator.http.get(f"/runs/{forced.json()['correlationId']}")).json()
    assert (run["revision"], run["status"]) == (3, "succeeded")
    history = (await operator.http.get("/rooms/room-rule-1/history")).json()["items"]
    assert [(item["revision"], item["specVersion"]) for item in history] == [(1, 3), (2, 3), (3, 2)]
    detail = (await operator.http.get("/rooms/room-rule-1")).json()
    assert (detail["revision"], detail["latestRevision"], detail["specVersion"]) == (3, 3, 2)


async def test_strict_upgrade_keeps_the_reference_rule(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    settings = operator_settings(roomserver, tmp_path, reconciliation={"upgrade": "strict"})
    async with running_operator(settings) as op:
        assert (await op.http.post("/apply", json=room_spec("room-strict-1", version=4))).status_code == 200
        same = await op.http.post("/apply", json=room_spec("room-strict-1", version=4, entities=3))
        assert (same.status_code, same.json()["code"]) == (400, "SPEC_UPGRADE_REJECTED")
        assert same.json()["errors"] == ["New version (4) must be greater than current version (4)"]
        identical = await op.http.post("/apply", json=room_spec("room-strict-1", version=4))
        assert (identical.status_code, identical.json()["unchanged"]) == (200, True)


async def test_concurrent_applies_are_ordered_by_acknowledgment(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    def spec(version: int) -> dict[str, Any]:
        return room_spec("room-many-1", version=version, entities=2 + version % 3)

    assert (await operator.http.post("/apply", json=spec(1))).status_code == 200
    versions = list(range(2, 52))
    answers = await asyncio.gather(*(operator.http.post("/apply", json=spec(v)) for v in versions))
    async with asyncio.timeout(30):
        await operator.controller.wait_idle()
    acknowledged = {}
    for version, answer in zip(versions, answers, strict=True):
        assert answer.status_code in (200, 202, 409), answer.text
        if answer.status_code == 409:
            assert answer.json()["code"] == "SPEC_VERSION_REGRESSION"
            assert answer.json()["offeredVersion"] == version
        else:
            acknowledged[answer.json()["revision"]] = (version, answer.json()["correlationId"])
    revisions = sorted(acknowledged)
    assert revisions == list(range(2, len(revisions) + 2))  # one number each, none skipped or shared
    by_revision = [acknowledged[revision][0] for revision in revisions]
    assert by_revision == sorted(by_revision)
    assert len(set(by_revision)) == len(by_revision)
    history = (await operator.http.get("/rooms/room-many-1/history")).json()["items"]
    assert [item["revision"] for item in history] == [1, *revisions]
    for item in history[1:]:  # no acknowledged spec lost: each is the revision its answer named
        assert (item["specVersion"], item["correlationId"]) == acknowledged[item["revision"]]
    last = revisions[-1]
    for revision in revisions:
        run = (await operator.http.get(f"/runs/{acknowledged[revision][1]}")).json()
        assert run["revision"] == revision
        if revision == last:
            assert run["status"] == "succeeded"
        elif run["status"] == "superseded":
            assert run["supersededByRevision"] > revision
        else:
            assert run["status"] == "succeeded", run
    room = (await operator.http.get("/rooms/room-many-1")).json()
    assert (room["revision"], room["specVersion"]) == (last, acknowledged[last][0])
    state = (await admin.get("/room/room-many-1/state")).json()
    assert len(state["entities"]) == 2 + acknowledged[last][0] % 3


def _protected_spec(version: int, *, keep: bool, protect: bool = True) -> dict[str, Any]:
    spec = room_spec("room-guard-1", version=version, artifacts=1)
    if keep:
        spec["spec"]["entities"].append({"id": "E-keep", "kind": "agent", "protect": protect})
        spec["spec"]["artifacts"].append(
            {
                "name": "keep-doc",
                "type": "document",
                "workspace": "shared",
                "seedFrom": "seeds/project-plan.md",
                "protect": protect,
            }
        )
    return spec


async def test_protection_outlives_the_spec_until_a_revision_unprotects(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    assert (await operator.http.post("/apply", json=_protected_spec(1, keep=True))).status_code == 200
    removed = await operator.http.post("/apply", json=_protected_spec(2, keep=False))
    assert removed.status_code == 200
    results = [removed.json()]
    for _ in range(5):
        run = await operator.http.post("/rooms/room-guard-1/reconcile")
        async with asyncio.timeout(20):
            await operator.controller.wait_idle()
        results.append((await operator.http.get(f"/runs/{run.json()['correlationId']}")).json()["result"])
    for result in results:
        blocked = [w for w in result["warnings"] if "(PROTECTED)" in w]
        assert any("E-keep" in w for w in blocked), result["warnings"]
        assert any("keep-doc" in w for w in blocked), result["warnings"]
    state = (await admin.get("/room/room-guard-1/state")).json()
    assert "E-keep" in {entity["id"] for entity in state["entities"]}
    assert "keep-doc" in {artifact["name"] for artifact in state["artifacts"]}
    unprotected = await operator.http.post("/apply", json=_protected_spec(3, keep=True, protect=False))
    assert unprotected.status_code == 200
    assert (await operator.http.post("/apply", json=_protected_spec(4, keep=False))).status_code == 200
    state = (await admin.get("/room/room-guard-1/state")).json()
    assert "E-keep" not in {entity["id"] for entity in state["entities"]}


async def test_a_restore_brings_back_a_revision_with_its_own_seed_bytes(
    operator: Operator, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    folders = [tmp_path / "first", tmp_path / "second"]
    for folder, text in zip(folders, (b"first bytes\n", b"second bytes, longer\n"), strict=True):
        folder.mkdir()
        (folder / "notes.md").write_bytes(text)

    def spec(version: int, entities: int) -> Any:
        data = room_spec("room-restore-1", version=version, entities=entities)
        data["spec"]["artifacts"] = [
            {"name": "notes", "type": "document", "workspace": "shared", "seedFrom": "notes.md"}
        ]
        return load_data(data, source="<test>", base_dir=folders[0])

    for version, folder in ((1, folders[0]), (2, folders[1])):
        submission = await operator.controller.apply(spec(version, version + 1), base_dir=folder, actor="t")
        assert (await submission.request.done) is not None
    notes = "/rooms/room-restore-1/artifacts/notes"
    assert (await admin.get(notes)).content == b"second bytes, longer\n"
    plan = await operator.http.post(
        "/rooms/room-restore-1/rollback", params={"dryRun": "true"}, json={"revision": 1}
    )
    assert (plan.status_code, plan.json()["revision"]) == (200, None)
    assert plan.json()["diff"]["toKick"] == ["E-agent-2"]
    assert len((await operator.http.get("/rooms/room-restore-1/history")).json()["items"]) == 2
    restored = await operator.http.post("/rooms/room-restore-1/rollback", json={"revision": 1})
    assert (restored.status_code, restored.json()["revision"], restored.json()["converged"]) == (200, 3, True)
    history = (await operator.http.get("/rooms/room-restore-1/history")).json()["items"]
    assert [(item["revision"], item["specVersion"], item["restoredFrom"]) for item in history] == [
        (1, 1, None), (2, 2, None), (3, 1, 1),
    ]  # fmt: skip
    assert history[2]["seeds"] == history[0]["seeds"]
    assert (await admin.get(notes)).content == b"first bytes\n"
    missing = await operator.http.post("/rooms/room-restore-1/rollback", json={"revision": 9})
    assert (missing.status_code, missing.json()) == (404, {"error": "Room room-restore-1 has no revision 9"})
    invalid = await operator.http.post("/rooms/room-restore-1/rollback", json={"revision": "x"})
    assert (invalid.status_code, invalid.json()["code"]) == (400, "INVALID_REQUEST")
    assert "revision" in invalid.json()["errors"][0]


async def test_roomop_rollback_plans_first_then_restores(operator: Operator) -> None:
    for version, entities in ((1, 2), (2, 3)):
        assert (
            await operator.http.post(
                "/apply", json=room_spec("room-cli-back", version=version, entities=entities)
            )
        ).status_code == 200
    runner = CliRunner()

    def rollback(*extra: str) -> Result:
        command = ["rollback", "room-cli-back", "--to-revision", "1", "--operator", operator.url, *extra]
        return runner.invoke(app, command)

    planned = await asyncio.to_thread(rollback)
    assert planned.exit_code == 2, planned.output
    assert "toKick: E-agent-2" in planned.output
    assert len((await operator.http.get("/rooms/room-cli-back/history")).json()["items"]) == 2
    applied = await asyncio.to_thread(rollback, "--yes", "--detailed-exitcode")
    assert applied.exit_code == 2, applied.output
    assert "restored room-cli-back revision 1 as revision 3" in applied.output
    again = await asyncio.to_thread(rollback, "--yes")
    assert again.exit_code == 0, again.output
    history = (await operator.http.get("/rooms/room-cli-back/history")).json()["items"]
    assert [item["restoredFrom"] for item in history] == [None, None, 1]


async def test_an_apply_with_the_plan_it_confirmed_refuses_a_changed_room(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    """`X-Expect-Plan` (what `roomop apply --operator` sends): when the room changed after the dry run
    whose plan the caller confirmed, the operator writes nothing and answers the new plan."""
    spec = room_spec("room-expect-1", entities=2)

    async def plan_of(answer: httpx.Response) -> dict[str, Any]:
        run = (await operator.http.get(f"/runs/{answer.json()['correlationId']}")).json()
        plan: dict[str, Any] = run["result"]["plan"]
        return plan

    digest = changes_digest(
        await plan_of(await operator.http.post("/apply", json=spec, headers={"X-Dry-Run": "true"}))
    )
    body = {"entityId": "E-agent-0", "kind": "agent", "displayName": "Someone else's"}
    async with admin:
        assert (await admin.put("/room/room-expect-1/entities/E-agent-0", json=body)).status_code == 201
        changed = await operator.http.post("/apply", json=spec, headers={"X-Expect-Plan": digest})
        assert (changed.status_code, changed.json()["code"]) == (400, "PLAN_CHANGED")
        fresh = changes_digest(await plan_of(changed))
        assert fresh != digest
        entities = (await admin.get("/room/room-expect-1/state")).json()["entities"]
        assert [(e["id"], e["displayName"]) for e in entities] == [("E-agent-0", "Someone else's")]
        applied = await operator.http.post("/apply", json=spec, headers={"X-Expect-Plan": fresh})
        assert (applied.status_code, applied.json()["success"]) == (200, True), applied.text
        bad = await operator.http.post("/apply", json=spec, headers={"X-Expect-Plan": "not-a-digest"})
        assert bad.status_code in (400, 422)


async def test_a_revision_no_run_could_judge_yet_stays_the_target_across_a_restart(tmp_path: Path) -> None:
    """An apply whose run cannot reach the room server is neither desired nor refused: it is the room's
    pending revision (in `/status`), kept by the store through a restart, and converged to once the
    room server answers; the older desired revision is never run towards in between."""
    port = free_port()
    dead = RoomServerHandle(
        url=f"http://127.0.0.1:{port}", token="t", admin_token="t", data_dir=tmp_path, app=None
    )
    async with running_operator(operator_settings(dead, tmp_path)) as op:
        answer = await op.http.post("/apply", json=room_spec("room-pending-1", entities=3))
        assert (answer.status_code, answer.json()["code"]) == (400, "ROOM_SERVER_UNREACHABLE")
        status = (await op.http.get("/rooms/room-pending-1")).json()["status"]
        assert (status["pendingRevision"], status["revision"], status["managed"]) == (1, 0, False)
    async with (
        running_roomserver(tmp_path / "roomserver", port=port) as rs,
        running_operator(operator_settings(rs, tmp_path)) as op,
    ):
        async with asyncio.timeout(30):
            while (await op.http.get("/rooms/room-pending-1")).json()["revision"] != 1:
                await op.controller.wait_idle()  # the loop's run after the backoff
                await asyncio.sleep(0.05)  # between polls of the view (the run's own event is internal)
        detail = (await op.http.get("/rooms/room-pending-1")).json()
        assert (detail["managed"], detail["status"]["pendingRevision"]) == (True, None)
        headers = {"Authorization": f"Bearer {rs.admin_token}"}
        async with httpx.AsyncClient(base_url=rs.url, headers=headers) as admin:
            state = (await admin.get("/room/room-pending-1/state")).json()
        assert len(state["entities"]) == 3
