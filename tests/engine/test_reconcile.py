"""The reconciler against the real room server: every change kind, idempotency, guardrails, scopes, errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.results import Phase
from roomoperator.settings import FeatureSettings, GuardrailSettings
from tests.engine.conftest import ListSink, fast_settings, room_spec
from tests.support.roomserver import RoomServerHandle, running_roomserver
from tests.support.servers import free_port

AGENT = {
    "id": "E-agent-1",
    "kind": "agent",
    "displayName": "Research Agent",
    "capabilities": ["read_artifacts"],
}
HUMAN = {"id": "E-human-1", "kind": "human", "displayName": "Ana"}
PLAN = {
    "name": "project-plan",
    "type": "document",
    "workspace": "shared",
    "tags": ["planning"],
    "seedFrom": "seeds/plan.md",
}
DATA = {
    "name": "research-data",
    "type": "dataset",
    "workspace": "analysis",
    "tags": ["data"],
    "seedFrom": "seeds/data.json",
}


def full_spec(**overrides: Any) -> Any:
    body: dict[str, Any] = {
        "entities": [AGENT, HUMAN],
        "artifacts": [{**PLAN, "promoteAfterSeed": True}, DATA],
        "policies": {"dmVisibilityDefault": "public", "maxArtifactsPerEntity": 50},
    }
    return room_spec(**{**body, **overrides})


async def test_converge_from_empty_then_one_read_and_no_write(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    sink = ListSink()
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(), audit=sink)
        reports: list[tuple[str, int, int]] = []
        first = await reconciler.reconcile(
            full_spec(), seed_root=seeds, actor="alice", progress=lambda *report: reports.append(report)
        )
        assert [r for r in reports if r[1] == 0] == [
            ("PLANNING", 0, 0),
            ("PRE_CHECKS", 0, 0),
            ("APPLY", 0, 7),
            ("VERIFY", 0, 0),
        ]
        assert reports[-2] == ("APPLY", 7, 7)
        assert first.success, (first.errors, first.warnings)
        assert first.converged is True
        assert first.phase is Phase.VERIFY
        assert sorted(first.applied) == sorted(
            [
                "join:E-agent-1",
                "join:E-human-1",
                "seed:project-plan",
                "promote:project-plan",
                "seed:research-data",
                "set-policy:dmVisibilityDefault",
                "set-policy:maxArtifactsPerEntity",
            ]
        )
        assert first.diff is not None
        assert first.diff.to_seed == ["project-plan", "research-data"]
        assert first.plan is not None
        assert first.plan["formatVersion"] == "1.0"
        # state + whoami + a batch per group (entities; the promote after the 2 seeds; policies) + verify
        assert first.requests == 1 + 1 + 1 + (2 + 1) + 1 + 1
        seeded = [e for e in sink.entries if e.action == "artifact.seeded"]
        assert {e.metadata["artifactName"] for e in seeded} == {"project-plan", "research-data"}
        assert all(len(e.metadata["hash"]) == 64 and e.actor == "alice" for e in seeded)
        assert sink.actions[:2] == ["reconcile.planning", "reconcile.pre_checks"]
        assert sink.actions[-2:] == ["reconcile.apply", "reconcile.verify"]

        state = await client.get_state("room-eng-01")
        assert [e.id for e in state.entities] == ["E-agent-1", "E-human-1"]
        assert state.policies.dm_visibility_default == "public"
        plan_artifact = next(a for a in state.artifacts if a.name == "project-plan")
        assert plan_artifact.promoted
        assert plan_artifact.fingerprint == next(
            e.metadata["hash"] for e in seeded if e.metadata["artifactName"] == "project-plan"
        )

        sink.entries.clear()
        again = await reconciler.reconcile(full_spec(), seed_root=seeds)
        assert again.success
        assert again.converged is True
        assert again.requests == 1
        assert again.applied == ()
        assert again.plan is not None
        assert again.plan["changes"] == []
        assert (await client.get_state("room-eng-01")).revision == state.revision


async def test_update_kick_delete_and_reseed(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(guardrails=GuardrailSettings(change_threshold=1.0)))
        assert (await reconciler.reconcile(full_spec(), seed_root=seeds)).success
        (seeds / "seeds" / "data.json").write_text('{"rows": [4]}\n')
        changed = full_spec(
            entities=[{**AGENT, "displayName": "Renamed", "visibility": "public"}],
            artifacts=[{**PLAN, "promoteAfterSeed": True}, {**DATA, "name": "fresh-data"}],
        )
        result = await reconciler.reconcile(changed, seed_root=seeds)
        assert result.success, result.warnings
        assert result.converged is True
        assert sorted(result.applied) == sorted(
            ["update:E-agent-1", "kick:E-human-1", "seed:fresh-data", "delete-artifact:research-data"]
        )
        state = await client.get_state("room-eng-01")
        assert [(e.id, e.display_name, e.visibility) for e in state.entities] == [
            ("E-agent-1", "Renamed", "public")
        ]
        assert [a.name for a in state.artifacts] == ["fresh-data", "project-plan"]

        (seeds / "seeds" / "plan.md").write_text("# Plan v2\n")
        reseeded = await reconciler.reconcile(changed, seed_root=seeds)
        assert reseeded.applied == (
            "reseed:project-plan",
            "promote:project-plan",
        )
        latest = next(
            a for a in (await client.get_state("room-eng-01")).artifacts if a.name == "project-plan"
        )
        assert (latest.version, latest.promoted) == (2, True)


async def test_guardrails_refuse_and_leave_the_room_untouched(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    crowd = [{"id": f"E-member-{i}", "kind": "human"} for i in range(10)]
    sink = ListSink()
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(), audit=sink)
        assert (await reconciler.reconcile(room_spec(entities=crowd), seed_root=seeds)).success
        revision = (await client.get_state("room-eng-01")).revision
        result = await reconciler.reconcile(room_spec(entities=crowd[:3]), seed_root=seeds)
        assert not result.success
        assert result.code == "GUARDRAILS_EXCEEDED"
        assert result.phase is Phase.PRE_CHECKS
        assert result.errors == (
            "Kick count (7) exceeds limit (5)",
            "Change ratio (70%) exceeds threshold (50%). X-Confirm:true header required.",
        )
        assert result.plan is not None
        assert result.plan["guardrails"]["passed"] is False
        assert sink.actions[-1] == "reconcile.guardrail_refused"
        assert (await client.get_state("room-eng-01")).revision == revision

        confirmed = await reconciler.reconcile(room_spec(entities=crowd[:5]), seed_root=seeds, confirm=False)
        assert confirmed.success  # exactly 50% passes
        emptied = await reconciler.reconcile(room_spec(), seed_root=seeds)
        assert emptied.code == "GUARDRAILS_EXCEEDED"
        assert any("would empty room" in e for e in emptied.errors)
        done = await reconciler.reconcile(room_spec(), seed_root=seeds, confirm=True)
        assert done.success
        assert "High change ratio (100%) detected but confirmed" in done.warnings
        assert (await client.get_state("room-eng-01")).entities == ()


async def test_protected_items_are_never_removed(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(guardrails=GuardrailSettings(change_threshold=1.0)))
        before = room_spec(entities=[{**AGENT, "protect": True}, HUMAN])
        assert (await reconciler.reconcile(before, seed_root=seeds)).success
        after = room_spec(entities=[HUMAN])
        result = await reconciler.reconcile(after, seed_root=seeds, protected=frozenset({AGENT["id"]}))
        assert result.success
        assert result.converged is False
        assert result.partial_success
        assert result.remaining == ("kick:E-agent-1",)
        assert result.diff is not None
        assert result.diff.blocked == ["E-agent-1"]
        assert [e.id for e in (await client.get_state("room-eng-01")).entities] == ["E-agent-1", "E-human-1"]


async def test_dry_run_stops_after_pre_checks_and_reports_blocked(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    spec = full_spec(artifacts=[PLAN, {**DATA, "seedFrom": "seeds/missing.json"}])
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        result = await Reconciler(client, fast_settings()).reconcile(spec, seed_root=seeds, dry_run=True)
        assert result.success
        assert result.dry_run
        assert result.phase is Phase.PRE_CHECKS
        assert result.diff is not None
        assert result.diff.blocked == ["research-data"]
        assert f"Seed file not found: {seeds / 'seeds' / 'missing.json'}" in result.warnings
        assert result.requests == 2  # state + whoami, no write
        assert (await client.get_state("room-eng-01")).revision == 0


async def test_missing_scopes_block_before_any_write(tmp_path: Path, seeds: Path) -> None:
    scopes = ("room:read", "room:entities:write")
    async with (
        running_roomserver(tmp_path / "limited", scopes=scopes) as limited,
        RoomServerClient(limited.url, token=limited.token) as client,
    ):
        result = await Reconciler(client, fast_settings()).reconcile(full_spec(), seed_root=seeds)
    assert result.success  # nothing failed: the artifact and policy changes were blocked up front
    assert sorted(result.applied) == ["join:E-agent-1", "join:E-human-1"]
    assert result.plan is not None
    blocked = {(c["op"], c["name"]): c["blocked"] for c in result.plan["changes"] if c["blocked"]}
    assert blocked[("seed", "project-plan")]["code"] == "MISSING_SCOPE"
    assert "room:artifacts:write" in blocked[("seed", "project-plan")]["message"]
    assert blocked[("set-policy", "dmVisibilityDefault")]["code"] == "MISSING_SCOPE"
    assert result.converged is False


async def test_a_run_whose_every_change_is_blocked_is_no_success(tmp_path: Path, seeds: Path) -> None:
    """A read-only token: the room needs changes and none can be made; the answer must not say success."""
    async with (
        running_roomserver(tmp_path / "readonly", scopes=("room:read",)) as limited,
        RoomServerClient(limited.url, token=limited.token) as client,
    ):
        result = await Reconciler(client, fast_settings()).reconcile(full_spec(), seed_root=seeds)
    assert (result.success, result.partial_success, result.code) == (False, True, "CHANGES_BLOCKED")
    assert result.applied == ()
    assert result.remaining


async def test_unauthorized_and_unreachable_are_run_level_codes(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    sink = ListSink()
    async with RoomServerClient(roomserver.url, token="wrong-token-0123456789") as client:
        result = await Reconciler(client, fast_settings(), audit=sink).reconcile(full_spec(), seed_root=seeds)
    assert (result.success, result.code, result.phase) == (False, "UNAUTHORIZED", Phase.PLANNING)
    assert sink.actions == ["reconcile.failed"]
    async with RoomServerClient(f"http://127.0.0.1:{free_port()}", token="x") as client:
        down = await Reconciler(client, fast_settings()).reconcile(full_spec(), seed_root=seeds)
    assert (down.success, down.code) == (False, "ROOM_SERVER_UNREACHABLE")
    assert down.errors
    assert "cannot connect to the room server" in down.errors[0]


async def test_resources_load_providers_and_stay_pending_until_connected(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    resource = {
        "name": "analysis-tool",
        "type": "mcp-tool",
        "config": {"endpoint": f"http://127.0.0.1:{free_port()}/mcp"},
    }
    spec = room_spec(resources=[resource])
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings(features=FeatureSettings(resources=True)))
        result = await reconciler.reconcile(spec, seed_root=seeds)
        assert result.applied == ("ensure-resource:analysis-tool",)
        status = await client.mcp_status()
        assert "analysis-tool" in str(status)
        assert result.converged is False  # the provider is not connected: PENDING, never reported done
        again = await reconciler.reconcile(spec, seed_root=seeds)
        assert again.applied == ()
        assert again.plan is not None
        assert [c["blocked"]["code"] for c in again.plan["changes"]] == ["PENDING"]
        off = await Reconciler(client, fast_settings()).reconcile(spec, seed_root=seeds)
        assert off.plan is not None
        assert off.plan["changes"] == []


async def test_delete_limit_against_the_server(roomserver: RoomServerHandle, seeds: Path) -> None:
    settings = fast_settings(
        guardrails=GuardrailSettings(max_artifacts_delete_per_cycle=1, change_threshold=1.0)
    )
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, settings)
        assert (await reconciler.reconcile(full_spec(), seed_root=seeds)).success
        result = await reconciler.reconcile(full_spec(artifacts=[]), seed_root=seeds)
        assert (result.code, result.errors) == (
            "GUARDRAILS_EXCEEDED",
            ("Artifact delete count (2) exceeds limit (1)",),
        )
        assert len((await client.get_state("room-eng-01")).artifacts) == 2


async def test_reference_clients_policy_none_is_declared_and_kept(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    """`allow_commands_from: none` (sent by the reference's clients) is accepted on both sides and stays
    converged."""
    silent = {**AGENT, "policy": {"allow_commands_from": "none"}}
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        reconciler = Reconciler(client, fast_settings())
        result = await reconciler.reconcile(full_spec(entities=[silent], artifacts=[]), seed_root=seeds)
        assert result.success, result.warnings
        (entity,) = (await client.get_state("room-eng-01")).entities
        assert entity.policy.allow_commands_from == "none"
        again = await reconciler.reconcile(full_spec(entities=[silent], artifacts=[]), seed_root=seeds)
        assert (again.applied, again.converged) == ((), True)
