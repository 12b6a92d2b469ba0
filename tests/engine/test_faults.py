"""Real failures through a fault-injecting proxy: retry, Retry-After, partial success, rollback, stale
re-plan, and the reference .NET server (no operator endpoints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.audit import AuditEntry
from roomoperator.model.results import Phase
from roomoperator.settings import (
    GuardrailSettings,
    OperatorSettings,
    ReconciliationSettings,
    RoomServerSettings,
)
from tests.engine import conftest
from tests.engine.conftest import ListSink, room_spec
from tests.engine.test_reconcile import AGENT, DATA, HUMAN, PLAN, full_spec
from tests.support.faults import fault_proxy
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import serve_app

PUT_ENTITY = r"/room/room-eng-01/entities/[^/]+"


def fast_settings(**overrides: Any) -> OperatorSettings:
    """The faults here are injected into the single endpoints: the batch endpoint stays unused
    (`tests/engine/test_batching.py` injects into it)."""
    return conftest.fast_settings(room_server=RoomServerSettings(batch=False), **overrides)


ARTIFACTS = r"/rooms/room-eng-01/artifacts"


async def test_transient_failures_are_retried(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject("PUT", PUT_ENTITY, status=503, times=2)
        proxy.inject("POST", ARTIFACTS, status=429, headers={"Retry-After": "0"}, times=1)
        sink = ListSink()
        async with RoomServerClient(url, token=roomserver.token) as client:
            result = await Reconciler(client, fast_settings(), audit=sink).reconcile(
                full_spec(), seed_root=seeds
            )
    assert result.success, result.warnings
    assert result.converged is True
    joins = [e for e in sink.entries if e.action == "entity.joined"]
    assert sum(int(e.metadata["attempts"]) for e in joins) == 4  # the joins run concurrently
    assert proxy.count("PUT", PUT_ENTITY) == 4  # two injected 503s, then two real joins
    assert proxy.count("POST", ARTIFACTS) == 3


async def test_a_timed_out_write_is_retried(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject("PUT", PUT_ENTITY, hang=True)
        async with RoomServerClient(url, token=roomserver.token, timeout=0.5) as client:
            result = await Reconciler(client, fast_settings()).reconcile(
                room_spec(entities=[AGENT]), seed_root=seeds
            )
    assert result.success, result.warnings
    assert result.applied == ("join:E-agent-1",)
    assert proxy.count("PUT", PUT_ENTITY) == 2  # the hung call, then the retry


async def test_permanent_failure_is_not_retried_and_others_go_on(
    roomserver: RoomServerHandle, seeds: Path
) -> None:
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject("POST", ARTIFACTS, status=400, times=1)
        async with RoomServerClient(url, token=roomserver.token) as client:
            reconciler = Reconciler(client, fast_settings(), audit=(sink := ListSink()))
            result = await reconciler.reconcile(full_spec(artifacts=[PLAN]), seed_root=seeds)
            assert not result.success
            assert result.partial_success
            assert result.code == "ITEMS_FAILED"
            assert [(f.op, f.target, f.attempts) for f in result.failed] == [("seed", "project-plan", 1)]
            assert "Failed to seed artifact project-plan: 400 INJECTED_FAULT: injected 400" in result.warnings
            assert "join:E-agent-1" in result.applied
            assert "set-policy:dmVisibilityDefault" in result.applied
            assert result.remaining == ("seed:project-plan",)
            assert "item.failed" in sink.actions
            healed = await reconciler.reconcile(full_spec(artifacts=[PLAN]), seed_root=seeds)
            assert healed.success
            assert healed.applied == ("seed:project-plan",)


async def test_retries_give_up_after_max_attempts(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject("PUT", PUT_ENTITY, status=500, times=100)
        async with RoomServerClient(url, token=roomserver.token) as client:
            result = await Reconciler(client, fast_settings()).reconcile(
                room_spec(entities=[AGENT]), seed_root=seeds
            )
    assert [(f.target, f.attempts) for f in result.failed] == [("E-agent-1", 4)]  # 1 + MaxAttempts (3)
    assert proxy.count("PUT", PUT_ENTITY) == 4


async def test_unauthorized_during_apply_aborts_the_run(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject("PUT", PUT_ENTITY, status=401, times=1)
        async with RoomServerClient(url, token=roomserver.token) as client:
            reconciler = Reconciler(client, fast_settings(), concurrency=1)
            result = await reconciler.reconcile(room_spec(entities=[AGENT, HUMAN]), seed_root=seeds)
    assert (result.success, result.code) == (False, "UNAUTHORIZED")
    assert result.applied == ()
    assert proxy.count("PUT", PUT_ENTITY) == 1  # the second join was never sent


@pytest.mark.parametrize("switch", ["spec", "settings"])
async def test_rollback_restores_what_the_run_changed(
    roomserver: RoomServerHandle, seeds: Path, switch: str
) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        settings = fast_settings(
            guardrails=GuardrailSettings(change_threshold=1.0),
            reconciliation=ReconciliationSettings(
                rate_limit_per_second=10_000, rollback="on-failure" if switch == "settings" else "never"
            ),
        )
        reconciler = Reconciler(client, settings, audit=(sink := ListSink()))
        base = full_spec(artifacts=[PLAN, DATA])
        assert (await reconciler.reconcile(base, seed_root=seeds)).success
        before = await client.get_state("room-eng-01")
        (seeds / "seeds" / "plan.md").write_text("# rewritten\n")
        proxy.inject("PUT", r"/room/room-eng-01/entities/E-new-1", status=400, times=1)
        target = full_spec(
            entities=[{**AGENT, "displayName": "Changed"}, {"id": "E-new-1", "kind": "npc"}],
            artifacts=[PLAN],
            policies={"dmVisibilityDefault": "owner"},
            rollback="on-failure" if switch == "spec" else "never",
        )
        result = await reconciler.reconcile(target, seed_root=seeds)
        assert not result.success
        assert result.phase is Phase.ROLLBACK
        assert [f.target for f in result.failed] == ["E-new-1"]
        assert "reconcile.rollback" in sink.actions
        assert len(result.rolled_back) == 5  # the two policy changes were one call, undone by one
        after = await client.get_state("room-eng-01")
        assert [e.model_dump() for e in after.entities] == [e.model_dump() for e in before.entities]
        assert after.policies == before.policies
        assert [(a.name, a.sha256, a.type, a.tags) for a in after.artifacts] == [
            (a.name, a.sha256, a.type, a.tags) for a in before.artifacts
        ]
        assert result.converged is False


async def test_stale_state_is_read_again_and_replanned(roomserver: RoomServerHandle, seeds: Path) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:

        class Intruder(ListSink):
            async def record(self, entry: AuditEntry) -> None:
                await super().record(entry)
                if entry.action == "reconcile.pre_checks" and len(self.actions) == 2:
                    # Someone else changes the room between the first read and APPLY.
                    await client.put_entity(
                        "room-eng-01", "E-intruder", {"entityId": "E-intruder", "kind": "npc"}
                    )

        settings = fast_settings(
            reconciliation=ReconciliationSettings(rate_limit_per_second=10_000, stale_tolerance_seconds=0),
            guardrails=GuardrailSettings(change_threshold=1.0),
        )
        result = await Reconciler(client, settings, audit=Intruder()).reconcile(
            room_spec(entities=[AGENT]), seed_root=seeds
        )
        assert result.success, result.warnings
        assert "Room state was stale when APPLY started: re-read and re-planned" in result.warnings
        assert sorted(result.applied) == ["join:E-agent-1", "kick:E-intruder"]
        assert [e.id for e in (await client.get_state("room-eng-01")).entities] == ["E-agent-1"]


def reference_server() -> Starlette:
    """The reference .NET server's surface as the operator sees it: /health, no /room/... endpoints, and
    artifact writes that need a live hub session (401 without one)."""

    async def health(_: object) -> PlainTextResponse:
        return PlainTextResponse("Healthy")

    async def artifacts(_: object) -> JSONResponse:
        return JSONResponse(
            {"error": "Unauthorized", "code": "AUTH_REQUIRED", "message": "X-Entity-Id required"}, 403
        )

    return Starlette(
        routes=[Route("/health", health), Route("/rooms/{room}/artifacts", artifacts, methods=["POST"])]
    )


async def test_reference_server_changes_are_blocked_never_reported_done(seeds: Path) -> None:
    async with serve_app(reference_server()) as url, RoomServerClient(url) as client:
        result = await Reconciler(client, fast_settings()).reconcile(
            full_spec(artifacts=[DATA]), seed_root=seeds
        )
    assert not result.success
    assert result.applied == ()
    assert result.plan is not None
    codes = {(c["op"], c["name"]): (c["blocked"] or {}).get("code") for c in result.plan["changes"]}
    assert codes[("join", "E-agent-1")] == "UNSUPPORTED_BY_SERVER"
    assert codes[("set-policy", "dmVisibilityDefault")] == "UNSUPPORTED_BY_SERVER"
    assert codes[("seed", "research-data")] is None
    assert [f.target for f in result.failed] == ["research-data"]
    assert any("has no operator endpoints" in w for w in result.warnings)
    assert result.converged is False


async def test_an_unchanged_room_is_read_with_304_and_not_planned_again(
    roomserver: RoomServerHandle, seeds: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = r"/room/room-eng-01/state"
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        reconciler = Reconciler(client, fast_settings())
        spec = full_spec()
        assert (await reconciler.reconcile(spec, seed_root=seeds)).converged is True

        def unexpected(*args: object, **kwargs: object) -> None:
            raise AssertionError("an unchanged room was planned again")

        monkeypatch.setattr("roomoperator.engine.reconciler.plan_room", unexpected)
        before = len(proxy.hits)
        again = await reconciler.reconcile(spec, seed_root=seeds)
        assert again.success
        assert again.converged is True
        assert again.requests == 1  # a 304 is still one state read
        assert proxy.hits[before:] == [("GET", state, 304)]
        monkeypatch.undo()
        # Drift: the room changed, so the next read is a 200 and the run plans and repairs it.
        await client.kick("room-eng-01", AGENT["id"])
        repaired = await reconciler.reconcile(spec, seed_root=seeds)
        assert repaired.applied == (f"join:{AGENT['id']}",)
        assert repaired.converged is True
    assert ("GET", state, 200) in proxy.hits[before + 1 :]
