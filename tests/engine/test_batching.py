"""Batched writes against the real room server (behind the counting proxy): one batch request per apply
group, each item's result mapped to its change as the single call's answer is, rollback in one batch, and
the single endpoints when the server has no `batch.v1`; a converged room costs one request either way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from roomoperator.clients.errors import NotFound, Rejected, RoomServerError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.applying import Applier
from roomoperator.engine.executing import Execution, roll_back
from roomoperator.engine.outcome import RunDraft
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.reconciler import Reconciler
from roomoperator.engine.retrying import Retrier
from roomoperator.engine.seeding import SeedFiles
from roomoperator.model.writes import Write
from roomoperator.planning.planner import plan_room
from roomoperator.settings import OperatorSettings, RoomServerSettings
from roomoperator.spec.models import RoomSpec
from tests.engine.conftest import ListSink, fast_settings, room_spec
from tests.support.faults import FaultProxy, fault_proxy
from tests.support.roomserver import RoomServerHandle

ROOM = "room-eng-01"
BATCH = rf"/room/{ROOM}/batch"
PUT_ENTITY = rf"/room/{ROOM}/entities/[^/]+"
ARTIFACTS = rf"/rooms/{ROOM}/artifacts"
ENTITIES = [
    {"id": f"E-agent-{i:02d}", "kind": "agent", "capabilities": ["read_artifacts"]} for i in range(20)
]
PLAN = {
    "name": "project-plan",
    "type": "document",
    "workspace": "shared",
    "tags": ["planning"],
    "seedFrom": "seeds/plan.md",
    "promoteAfterSeed": True,
}
DATA = {"name": "research-data", "type": "dataset", "workspace": "analysis", "seedFrom": "seeds/data.json"}


def _spec(**body: Any) -> RoomSpec:
    values: dict[str, Any] = {
        "entities": ENTITIES,
        "artifacts": [PLAN, DATA],
        "policies": {"dmVisibilityDefault": "public"},
        **body,
    }
    return room_spec(ROOM, **values)


def _writes(proxy: FaultProxy) -> dict[str, int]:
    return {
        "batch": proxy.count("POST", BATCH),
        "entity": proxy.count("PUT", PUT_ENTITY),
        "upload": proxy.count("POST", ARTIFACTS),
        "manager": proxy.count("PUT", rf"/rooms/{ROOM}/manager"),
        "policies": proxy.count("PUT", rf"/rooms/{ROOM}/policies"),
    }


async def test_each_group_is_one_batch_and_a_converged_room_one_read(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        reconciler = Reconciler(client, fast_settings(), audit=(sink := ListSink()), claim_rooms=True)
        first = await reconciler.reconcile(_spec(), seed_root=seeds)
        assert first.success, first.warnings
        assert first.converged is True
        # entities (the manager claim leading); the promote after the two uploads; the policies
        assert _writes(proxy) == {"batch": 3, "entity": 0, "upload": 2, "manager": 0, "policies": 0}
        assert first.requests == 1 + 1 + 3 + 2 + 1  # state, whoami, batches, uploads, verify
        assert len([e for e in sink.entries if e.action == "entity.joined"]) == 20
        state = await client.get_state(ROOM)
        assert [e.id for e in state.entities] == [e["id"] for e in ENTITIES]
        assert state.manager is not None
        assert state.manager.name == "test"
        assert [a.promoted for a in state.artifacts if a.name == "project-plan"] == [True]
        assert state.policies.dm_visibility_default == "public"

        again = await reconciler.reconcile(_spec(), seed_root=seeds)
        assert (again.success, again.converged, again.requests, again.applied) == (True, True, 1, ())


@pytest.mark.parametrize("reason", ["no whoami (a reference server)", "room_server.batch off"])
async def test_without_batch_the_single_endpoints(
    roomserver: RoomServerHandle, seeds: Path, reason: str
) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        settings: OperatorSettings
        if reason.startswith("no whoami"):
            proxy.inject("GET", "/auth/whoami", status=404, times=1_000)
            settings = fast_settings()
        else:
            settings = fast_settings(room_server=RoomServerSettings(batch=False))
        reconciler = Reconciler(client, settings)
        first = await reconciler.reconcile(_spec(), seed_root=seeds)
        assert first.success, first.warnings
        writes = _writes(proxy)
        assert (writes["batch"], writes["entity"], writes["upload"], writes["policies"]) == (0, 20, 2, 1)
        again = await reconciler.reconcile(_spec(), seed_root=seeds)
        assert (again.converged, again.requests) == (True, 1)


async def test_a_failed_batch_request_is_retried_whole(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        proxy.inject("POST", BATCH, status=503, times=1)
        sink = ListSink()
        result = await Reconciler(client, fast_settings(), audit=sink).reconcile(
            _spec(artifacts=[]), seed_root=seeds
        )
        assert result.success, result.warnings
        joins = [e for e in sink.entries if e.action == "entity.joined"]
        assert {e.metadata["attempts"] for e in joins} == {"2"}
        assert proxy.count("POST", BATCH) == 3  # the 503, its retry, the policies


async def test_each_item_result_goes_to_its_change(roomserver: RoomServerHandle, seeds: Path) -> None:
    settings = fast_settings()
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        await client.put_entity(ROOM, "E-gone", {"kind": "npc"})
        await client.seed_artifact(
            ROOM,
            name="project-plan",
            type_="document",
            workspace="shared",
            tags=["planning"],
            fingerprint=None,
            source=seeds / "seeds" / "plan.md",
        )
        spec = room_spec(ROOM, entities=ENTITIES[:2], artifacts=[PLAN])
        observed = await client.get_state(ROOM)
        plan = plan_room(spec, observed, seeds=SeedFiles().local_seeds(spec, seeds))
        assert sorted(f"{c.op}:{c.name}" for c in plan.actionable) == [
            "join:E-agent-00",
            "join:E-agent-01",
            "kick:E-gone",
            "promote:project-plan",
        ]
        # Someone else removes both before the run writes: the kick is done (404), the promote fails.
        assert await client.kick(ROOM, "E-gone")
        assert await client.delete_artifact(ROOM, "project-plan")
        run = RunDraft(
            spec=spec, correlation_id="c-1", actor=None, dry_run=False, operator_version="t", audit_sink=None
        )
        limiter = RateLimiter(10_000)
        applier = Applier(client, observed, retrier=Retrier(settings.retry), limiter=limiter)
        before = proxy.count("POST", BATCH)
        await Execution(run, applier, concurrency=4, progress=None, batching=True).apply(plan)
        assert proxy.count("POST", BATCH) - before == 2  # the entities group, the promote
        assert sorted(run.applied) == ["join:E-agent-00", "join:E-agent-01", "kick:E-gone"]
        assert [(f.op, f.target, f.attempts) for f in run.failed] == [("promote", "project-plan", 1)]
        assert run.failed[0].message.startswith("404 ")
        assert "Failed to promote artifact project-plan: 404 " in run.warnings[0]

        # ROLLBACK: the two joins this run made go back in one batch, newest first; the kick's undo
        # declares E-gone again, as the room had it when planned.
        await roll_back(run, applier, batching=True)
        assert proxy.count("POST", BATCH) - before == 3
        assert len(run.rolled_back) == 3
        state = await client.get_state(ROOM)
        assert [e.id for e in state.entities] == ["E-gone"]


async def test_batch_results_are_the_single_calls_answers(roomserver: RoomServerHandle) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        assert await client.batching()
        writes = [
            Write.put_entity({"entityId": "E-one", "kind": "agent"}),
            Write.put_entity({"entityId": "E-one", "kind": "agent"}),
            Write.remove_entity("E-absent"),
            Write.put_entity({"entityId": "E-bad", "kind": "agent", "visibility": "nobody"}),
            Write.promote_artifact("absent"),
            Write.delete_artifact("absent"),
        ]
        batched = await client.batch(ROOM, writes)
        assert [(r.status, r.created, r.absent) for r in batched] == [
            (201, True, False),
            (200, False, False),
            (404, False, True),
            (400, False, False),
            (404, False, False),
            (404, False, True),
        ]
        await client.kick(ROOM, "E-one")
        for write, result in zip(writes, batched, strict=True):
            if result.error is None:
                single = await client.write(ROOM, write)
                assert (single.status, single.absent) == (result.status, result.absent)
                continue
            with pytest.raises(RoomServerError) as raised:
                await client.write(ROOM, write)
            assert type(raised.value) is type(result.error)
            assert (raised.value.status, raised.value.code) == (result.error.status, result.error.code)
        assert isinstance(batched[3].error, Rejected)
        assert isinstance(batched[4].error, NotFound)
