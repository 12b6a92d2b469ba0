"""The operator removes only what it created, against the real room server: members' artifacts survive any
number of runs and are reported as unmanaged, `membership: open` keeps undeclared members, an engine that
claims rooms records itself as their manager (once), and the one-shot CLI refuses a managed room."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.settings import GuardrailSettings, OperatorSettings
from tests.engine.conftest import fast_settings, room_spec
from tests.engine.test_cli import invoke
from tests.support.roomserver import RoomServerHandle, running_roomserver

OWNER = {"id": "E-human-owner", "kind": "human"}
PLAN = {"name": "project-plan", "type": "document", "workspace": "shared", "seedFrom": "seeds/plan.md"}
ROOM = "room-eng-01"


def settings() -> OperatorSettings:
    """Guardrails out of the way: these tests remove most of a small room on purpose."""
    return fast_settings(guardrails=GuardrailSettings(change_threshold=1.0, allow_empty_room=True))


def http(roomserver: RoomServerHandle, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token or roomserver.token}"}
    return httpx.AsyncClient(base_url=roomserver.url, headers=headers, timeout=10)


async def upload(client: httpx.AsyncClient, name: str, data: bytes, *, entity: str | None = None) -> None:
    files = {"spec": (None, json.dumps({"name": name, "type": "document"})), "data": (name, data)}
    headers = {"X-Entity-Id": entity} if entity else {}
    answer = await client.post(f"/rooms/{ROOM}/artifacts", files=files, headers=headers)
    assert answer.status_code == 201, answer.text


async def test_a_members_artifact_survives_many_runs_and_is_reported_unmanaged(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    spec = room_spec(entities=[OWNER], artifacts=[PLAN])
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client, http(roomserver) as member:
        reconciler = Reconciler(client, settings(), claim_rooms=True)
        assert (await reconciler.reconcile(spec, seed_root=seeds)).converged
        # the member writes with the operator's own token: X-Entity-Id makes it the member's
        await upload(member, "meeting-notes", b"# notes\n", entity="E-human-owner")
        results = []
        for run in range(12):
            # drift between runs, so that every run writes (an idle run would prove nothing)
            policies = {"maxArtifactsPerEntity": 10 + run}
            assert (await member.put(f"/rooms/{ROOM}/policies", json=policies)).status_code == 200
            results.append(await reconciler.reconcile(spec, seed_root=seeds))
        assert all(r.success and r.converged and r.applied for r in results), results[-1]
        for result in results:
            assert result.plan is not None
            assert result.plan["unmanaged"] == [
                {"kind": "artifact", "name": "meeting-notes", "createdBy": "E-human-owner"}
            ]
            assert result.diff is not None
            assert result.diff.to_delete_artifacts == []
        state = await client.get_state(ROOM)
        notes = next(a for a in state.artifacts if a.name == "meeting-notes")
        assert (notes.created_by, notes.updated_by, notes.version) == ("E-human-owner", "E-human-owner", 1)
        assert (await member.get(f"/rooms/{ROOM}/artifacts/meeting-notes")).content == b"# notes\n"


async def test_what_the_operator_seeded_is_deleted_when_the_spec_drops_it(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client, http(roomserver) as member:
        reconciler = Reconciler(client, settings())
        assert (await reconciler.reconcile(room_spec(artifacts=[PLAN]), seed_root=seeds)).converged
        seeded = next(a for a in (await client.get_state(ROOM)).artifacts if a.name == "project-plan")
        assert (seeded.created_by, seeded.updated_by) == ("test", "test")  # the token's name
        # the operator's token without X-Entity-Id is the operator, whoever holds it
        await upload(member, "same-token", b"written as the operator", entity=None)
        async with http(roomserver, roomserver.admin_token) as admin:
            await upload(admin, "by-admin", b"another token")

        dropped = await reconciler.reconcile(room_spec(version=2), seed_root=seeds)
        assert (dropped.success, dropped.converged) == (True, True), dropped.warnings
        assert sorted(dropped.applied) == ["delete-artifact:project-plan", "delete-artifact:same-token"]
        assert dropped.plan is not None
        assert dropped.plan["unmanaged"] == [{"kind": "artifact", "name": "by-admin", "createdBy": "admin"}]
        assert [a.name for a in (await client.get_state(ROOM)).artifacts] == ["by-admin"]


async def test_a_member_edit_of_an_operator_artifact_keeps_it(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client, http(roomserver) as member:
        reconciler = Reconciler(client, settings())
        spec = room_spec(entities=[OWNER], artifacts=[PLAN])
        assert (await reconciler.reconcile(spec, seed_root=seeds)).converged
        await upload(member, "project-plan", b"# the member's edit\n", entity="E-human-owner")
        result = await reconciler.reconcile(room_spec(version=2, entities=[OWNER]), seed_root=seeds)
        assert result.success
        assert result.applied == ()
        edited = next(a for a in (await client.get_state(ROOM)).artifacts if a.name == "project-plan")
        assert (edited.created_by, edited.updated_by, edited.version) == ("test", "E-human-owner", 2)


async def test_open_membership_keeps_an_undeclared_entity_and_reports_it(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    guest: dict[str, Any] = {"kind": "human", "displayName": "Guest"}
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client, http(roomserver) as admin:
        reconciler = Reconciler(client, settings())
        assert (await reconciler.reconcile(room_spec(entities=[OWNER]), seed_root=seeds)).converged
        assert (await admin.put(f"/room/{ROOM}/entities/E-guest", json=guest)).status_code == 201

        opened = room_spec(version=2, entities=[OWNER], membership="open")
        kept = await reconciler.reconcile(opened, seed_root=seeds)
        assert kept.success
        assert kept.converged
        assert kept.applied == ()
        assert kept.plan is not None
        assert kept.plan["unmanaged"] == [{"kind": "entity", "name": "E-guest", "createdBy": None}]
        assert kept.plan["changes"] == []
        assert {e.id for e in (await client.get_state(ROOM)).entities} == {"E-guest", "E-human-owner"}

        closed = await reconciler.reconcile(room_spec(version=3, entities=[OWNER]), seed_root=seeds)
        assert closed.applied == ("kick:E-guest",)


async def test_the_engine_claims_a_room_once_and_a_converged_room_costs_one_read(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, settings(), claim_rooms=True, operator_url="http://op:8080")
        spec = room_spec(entities=[OWNER])
        dry = await reconciler.reconcile(spec, seed_root=seeds, dry_run=True)
        assert dry.success
        assert (await client.get_state(ROOM)).manager is None
        first = await reconciler.reconcile(spec, seed_root=seeds)
        assert first.converged
        manager = (await client.get_state(ROOM)).manager
        assert manager is not None
        assert (manager.name, manager.url) == ("test", "http://op:8080")
        again = await reconciler.reconcile(spec, seed_root=seeds)
        assert (again.converged, again.requests, again.applied) == (True, 1, ())
        assert (await client.get_state(ROOM)).manager == manager  # `since` kept: not claimed again


async def test_a_token_that_may_not_claim_is_not_asked_again(tmp_path: Path, seeds: Path) -> None:
    scopes = ("room:read", "room:entities:write")
    async with (
        running_roomserver(tmp_path / "limited", scopes=scopes) as limited,
        RoomServerClient(limited.url, token=limited.token) as client,
    ):
        reconciler = Reconciler(client, settings(), claim_rooms=True)
        first = await reconciler.reconcile(room_spec(entities=[OWNER]), seed_root=seeds)
        assert first.converged
        assert any("needs room:admin" in w for w in first.warnings)
        again = await reconciler.reconcile(room_spec(entities=[OWNER]), seed_root=seeds)
        assert (again.requests, again.converged) == (1, True)


async def test_the_one_shot_cli_refuses_a_managed_room_unless_forced(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    file = seeds / "room.json"
    body = {"apiVersion": "v1", "kind": "RoomSpec", "metadata": {"name": "cli", "version": 1}}
    file.write_text(json.dumps({**body, "spec": {"roomId": ROOM, "entities": [OWNER]}}))
    common = ("-f", str(file), "--server", roomserver.url, "--token", roomserver.token)
    async with http(roomserver) as admin:
        manager = {"name": "operator", "url": "http://127.0.0.1:8080"}
        assert (await admin.put(f"/rooms/{ROOM}/manager", json=manager)).status_code == 200

        for command in (("plan",), ("apply", "--yes")):
            refused = await asyncio.to_thread(invoke, *command, *common)
            assert refused.exit_code == 1, refused.output
            text = " ".join(refused.output.split())
            assert f"room {ROOM} is managed by the operator 'operator' (http://127.0.0.1:8080)" in text
            assert f"roomop apply --operator http://127.0.0.1:8080 -f {file}" in text
            assert "--force" in text
        assert (await admin.get(f"/room/{ROOM}/state")).json()["entities"] == []

        forced = await asyncio.to_thread(invoke, "apply", "--yes", "--force", *common)
        assert forced.exit_code == 0, forced.output
        assert "applying here anyway" in " ".join(forced.output.split())
        assert [e["id"] for e in (await admin.get(f"/room/{ROOM}/state")).json()["entities"]] == [
            "E-human-owner"
        ]
        # the one-shot path never claims: the manager stays the operator's
        assert (await admin.get(f"/room/{ROOM}/state")).json()["manager"]["name"] == "operator"
