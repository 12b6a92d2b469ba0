"""Continuous reconciliation with the real operator and room server: queueing and coalescing, rooms in
parallel, drift corrected from room-server events and by the interval loop, Stalled rooms, health, auth."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from pathlib import Path

import httpx
from pydantic import SecretStr

from roomoperator.settings import OperatorSettings
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator, sse_data
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port


async def test_one_room_is_serialised_and_coalesced_latest_spec_wins(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A slow write rate keeps the first run busy while the next applies arrive (single writes: a batch
    # makes the 40 joins in one request).
    settings = operator_settings(
        roomserver, tmp_path, reconciliation={"rate_limit_per_second": 20.0}, room_server={"batch": False}
    )
    async with running_operator(settings) as op, sse_data(op.http, "/events") as entries:
        first = asyncio.create_task(op.http.post("/apply", json=room_spec("room-busy-1", entities=40)))
        async for entry in entries:
            if entry.get("roomId") == "room-busy-1" and entry.get("action") == "entity.joined":
                break
        queued = [
            await op.http.post("/apply", json=room_spec("room-busy-1", version=v, entities=40 + v))
            for v in (2, 3, 4)
        ]
        assert [answer.status_code for answer in queued] == [202, 202, 202]
        ids = [answer.json()["correlationId"] for answer in queued]
        assert [answer.headers["Location"] for answer in queued] == [f"/runs/{cid}" for cid in ids]
        assert queued[0].json()["message"] == "Request queued"
        done = await first
        assert done.status_code == 200
        async with asyncio.timeout(20):
            await op.controller.wait_idle()
        runs = [(await op.http.get(f"/runs/{cid}")).json() for cid in ids]
        assert [(r["status"], r["supersededBy"]) for r in runs] == [
            ("superseded", ids[1]), ("superseded", ids[2]), ("succeeded", None),
        ]  # fmt: skip
        assert runs[2]["result"]["converged"] is True
        state = (await admin.get("/room/room-busy-1/state")).json()
        assert len(state["entities"]) == 44
        assert [answer.json()["revision"] for answer in queued] == [2, 3, 4]
        assert [r["supersededByRevision"] for r in runs] == [3, 4, None]
        history = (await op.http.get("/rooms/room-busy-1/history")).json()["items"]
        # Every acknowledged spec is a revision; only the last one ran and became desired.
        assert [(item["specVersion"], item["desiredAt"] is not None) for item in history] == [
            (1, True), (2, False), (3, False), (4, True),
        ]  # fmt: skip
        superseded = (await op.http.get("/audit", params={"action": "run.superseded"})).json()["entries"]
        assert [e["correlationId"] for e in superseded] == ids[:2]


async def test_different_rooms_reconcile_in_parallel(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    settings = operator_settings(roomserver, tmp_path, reconciliation={"rate_limit_per_second": 40.0})
    async with running_operator(settings) as op:
        answers = await asyncio.gather(
            *(op.http.post("/apply", json=room_spec(f"room-parallel-{n}", entities=15)) for n in range(3))
        )
        assert [answer.status_code for answer in answers] == [200, 200, 200]
        runs = [(await op.http.get(f"/runs/{a.json()['correlationId']}")).json()["result"] for a in answers]
        starts = [dt.datetime.fromisoformat(r["startedAt"]) for r in runs]
        ends = [dt.datetime.fromisoformat(r["finishedAt"]) for r in runs]
        assert max(starts) < min(ends), "the three rooms' runs overlapped in time"


async def test_drift_is_corrected_from_room_server_events(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    assert (await operator.http.post("/apply", json=room_spec("room-drift-1"))).status_code == 200
    async with asyncio.timeout(10):
        await operator.app.state.follower.connected.wait()
        await operator.controller.wait_idle()
    async with sse_data(admin, "/events", roomId="room-drift-1") as events:
        assert (await admin.delete("/room/room-drift-1/entities/E-agent-1")).status_code == 204
        # The loop interval is 30 s here: only the event can bring the entity back this fast.
        async with asyncio.timeout(2):
            async for event in events:
                payload = event.get("payload", {})
                if payload.get("kind") == "ENTITY.JOIN" and payload["data"]["entity"]["id"] == "E-agent-1":
                    break
    async with asyncio.timeout(10):
        await operator.controller.wait_idle()
    assert "room_operator_drift_detected_total 1.0" in (await operator.http.get("/metrics")).text


def loop_only(roomserver: RoomServerHandle, tmp_path: Path, *, interval: float) -> OperatorSettings:
    """Settings of an operator that sees drift by its loop alone (no room-server events followed)."""
    return operator_settings(
        roomserver,
        tmp_path,
        reconciliation={"interval_seconds": interval},
        events={"follow_room_server": False},
    )


async def test_the_interval_loop_corrects_drift_without_events(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with running_operator(loop_only(roomserver, tmp_path, interval=0.3)) as op:
        assert (await op.http.post("/apply", json=room_spec("room-loop-1"))).status_code == 200
        async with sse_data(admin, "/events", roomId="room-loop-1") as events:
            await admin.delete("/room/room-loop-1/entities/E-agent-0")
            async with asyncio.timeout(3):
                async for event in events:
                    if event.get("payload", {}).get("kind") == "ENTITY.JOIN":
                        break
        async with asyncio.timeout(10):
            await op.controller.wait_idle()
        params = {"roomId": "room-loop-1", "action": "entity.joined"}
        drift = (await op.http.get("/audit", params=params)).json()
        assert len(drift["entries"]) == 3  # two from the apply, one from the loop


async def _metric(op: Operator, name: str) -> float:
    """The sum of the series of metric `name` (over its labels)."""
    text = (await op.http.get("/metrics")).text
    pattern = rf"^{re.escape(name)}(?:{{[^}}]*}})? ([0-9.e+]+)$"
    return sum(float(value) for value in re.findall(pattern, text, re.M))


async def test_a_settled_rooms_loop_runs_are_one_304_each_until_the_room_changes(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with running_operator(loop_only(roomserver, tmp_path, interval=0.1)) as op:
        assert (await op.http.post("/apply", json=room_spec("room-quiet-1"))).status_code == 200
        async with asyncio.timeout(10):
            while await _metric(op, "room_operator_unchanged_checks_total") < 5:  # noqa: ASYNC110  (a counter)
                await asyncio.sleep(0.05)
        assert await _metric(op, "room_operator_reconcile_attempts_total") == 1  # the apply alone
        checks = await _metric(op, "room_operator_unchanged_checks_total")
        answered_304 = await _metric(op, 'room_operator_room_server_requests_total{outcome="3xx"}')
        assert answered_304 in (checks, checks + 1)  # one conditional read each (one may be in flight)
        await admin.delete("/room/room-quiet-1/entities/E-agent-0")  # no event followed: the loop sees it
        async with asyncio.timeout(10):
            while await _metric(op, "room_operator_reconcile_attempts_total") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            await op.controller.wait_idle()
        state = (await admin.get("/room/room-quiet-1/state")).json()
        assert "E-agent-0" in {entity["id"] for entity in state["entities"]}
        assert (await op.http.get("/status/rooms/room-quiet-1")).json()["cyclesSinceConverged"] == 0


async def test_a_room_that_never_converges_becomes_stalled(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    settings = operator_settings(
        roomserver,
        tmp_path,
        reconciliation={"interval_seconds": 0.1, "jitter_percent": 0, "max_cycles_until_converged": 3},
        features={"resources": True},
    )
    spec = room_spec("room-stall-1")  # a resource without an endpoint can never be loaded
    spec["spec"]["resources"] = [{"name": "tool", "type": "mcp-tool"}]
    async with running_operator(settings) as op, sse_data(op.http, "/events") as entries:
        answer = await op.http.post("/apply", json=spec)
        assert (answer.status_code, answer.json()["partialSuccess"]) == (200, True)
        async with asyncio.timeout(10):
            async for entry in entries:
                if entry.get("roomId") == "room-stall-1" and entry.get("action") == "room.stalled":
                    break
        status = (await op.http.get("/status/rooms/room-stall-1")).json()
        assert status["cyclesSinceConverged"] >= 3
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Stalled"]["status"] == "True"
        assert conditions["Ready"]["status"] == "False"
        health = (await op.http.get("/health")).json()
        assert (health["status"], health["checks"]["rooms"]["stalled"]) == ("degraded", 1)
        assert (await op.http.get("/status")).json()["health"] == 1


async def test_unreachable_room_server_makes_the_operator_unhealthy(tmp_path: Path) -> None:
    dead = RoomServerHandle(
        url=f"http://127.0.0.1:{free_port()}", token="t", admin_token="t", data_dir=tmp_path, app=None
    )
    async with running_operator(operator_settings(dead, tmp_path)) as op:
        answer = await op.http.post("/apply", json=room_spec("room-dead-1"))
        assert (answer.status_code, answer.json()["code"]) == (400, "ROOM_SERVER_UNREACHABLE")
        health = await op.http.get("/health")
        assert health.status_code == 503
        assert health.headers["content-type"] == "application/problem+json"
        assert (health.json()["title"], health.json()["status"]) == ("Unhealthy", 503)
        assert (await op.http.get("/status")).json()["health"] == 2
        assert (await op.http.get("/rooms/room-dead-1")).json()["managed"] is False
        failed = (await op.http.get("/audit", params={"action": "reconcile.failed"})).json()["entries"]
        assert failed[0]["metadata"]["code"] == "ROOM_SERVER_UNREACHABLE"
        problem = await op.http.get("/mcp/status")
        assert (problem.status_code, problem.json()["title"]) == (502, "Failed to get MCP status")


async def test_mutating_endpoints_need_the_api_token(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    settings = operator_settings(roomserver, tmp_path, api={"token": SecretStr("s3cret")})
    async with running_operator(settings) as op:
        refused = await op.http.post("/apply", json=room_spec("room-auth-1"))
        assert refused.status_code == 401
        assert refused.json()["code"] == "AUTH_REQUIRED"
        assert refused.headers["WWW-Authenticate"] == "Bearer"
        wrong = await op.http.post(
            "/apply", json=room_spec("room-auth-1"), headers={"Authorization": "Bearer nope"}
        )
        assert wrong.status_code == 401
        for method, path in (
            ("POST", "/rooms/room-auth-1/reconcile"),
            ("DELETE", "/rooms/room-auth-1"),
            ("POST", "/mcp/load"),
        ):
            assert (await op.http.request(method, path)).status_code == 401
        assert (await op.http.get("/status")).status_code == 401  # reads need a token too
        assert (await op.http.get("/health")).status_code == 200  # api.open_probes
        good = await op.http.post(
            "/apply", json=room_spec("room-auth-1"), headers={"Authorization": "Bearer s3cret"}
        )
        assert good.status_code == 200
        entries = (
            await op.http.get(
                "/audit",
                params={"correlationId": good.json()["correlationId"]},
                headers={"Authorization": "Bearer s3cret"},
            )
        ).json()
        assert {e["actor"] for e in entries["entries"]} == {"api"}


async def test_the_loop_keeps_the_confirmation_of_the_spec_it_restores(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    settings = operator_settings(
        roomserver,
        tmp_path,
        guardrails={"require_confirm_header": True},
        reconciliation={"interval_seconds": 0.2},
    )
    intruders = {f"E-intruder-{n}" for n in range(3)}  # 3 kicks of 5 members: a 60 % change
    async with running_operator(settings) as op:
        confirm = {"X-Confirm": "yes"}
        confirmed = await op.http.post("/apply", json=room_spec("room-confirm-1"), headers=confirm)
        unconfirmed = await op.http.post("/apply", json=room_spec("room-confirm-2"))
        assert (confirmed.status_code, unconfirmed.status_code) == (200, 200)
    for room in ("room-confirm-1", "room-confirm-2"):  # the drift happens while the operator is down
        for entity in sorted(intruders):
            await admin.post(f"/room/{room}/join", json={"entityId": entity, "kind": "agent"})
    async with running_operator(settings) as op, sse_data(op.http, "/events") as entries:
        kicked: set[str] = set()
        refused = False
        async with asyncio.timeout(10):
            async for entry in entries:
                if entry.get("roomId") == "room-confirm-1" and entry.get("action") == "entity.kicked":
                    kicked.add(entry["metadata"]["entityId"])
                if (
                    entry.get("roomId") == "room-confirm-2"
                    and entry.get("action") == "reconcile.guardrail_refused"
                ):
                    refused = True
                if kicked == intruders and refused:
                    break
    state = (await admin.get("/room/room-confirm-2/state")).json()
    assert intruders <= {e["id"] for e in state["entities"]}
