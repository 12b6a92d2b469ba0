"""Webhook notifications end to end: a real operator and room server, a receiver on 127.0.0.1 that checks
signatures and fails on purpose; retries under one idempotency key, the delivery log, subscriptions by
kind and room pattern, the Slack body, and an operator restart in the middle of a delivery."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from roomoperator.settings import SourceSettings
from tests.notifications.conftest import SECRET, Receiver, eventually, receiving
from tests.service.conftest import Operator, operator_settings, room_spec, running_operator
from tests.support.roomserver import RoomServerHandle

ROOM = "room-notify-01"


def target(receiver: Receiver, **fields: Any) -> dict[str, Any]:
    return {"name": "hook", "url": receiver.url, "secret": SECRET, **fields}


def notifying(rs: RoomServerHandle, tmp_path: Path, *targets: dict[str, Any]) -> Any:
    notifications = {"targets": list(targets), "retry_initial_seconds": 0.05, "retry_max_seconds": 0.2}
    return operator_settings(rs, tmp_path, notifications=notifications)


async def refuse_by_guardrail(operator: Operator, room_id: str = ROOM) -> None:
    """A room of 8 entities, then a spec with none: 8 kicks pass the limit of 5, the guardrail refuses."""
    first = await operator.http.post("/apply", json=room_spec(room_id, entities=8))
    assert first.status_code in (200, 202), first.text
    await operator.controller.wait_idle()
    second = await operator.http.post("/apply", json=room_spec(room_id, version=2, entities=0))
    assert second.json()["code"] == "GUARDRAILS_EXCEEDED", second.text
    await operator.controller.wait_idle()


async def delivery_log(operator: Operator) -> list[dict[str, Any]]:
    answer = await operator.http.get("/notifications/deliveries")
    assert answer.status_code == 200, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def _delivered(operator: Operator, count: int) -> list[dict[str, Any]] | None:
    items = await delivery_log(operator)
    done = [item for item in items if item["status"] == "delivered"]
    return items if len(done) >= count else None


async def test_a_refusal_is_retried_under_one_key_until_delivered(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    async with receiving(fail_first=2) as receiver:
        settings = notifying(roomserver, tmp_path, target(receiver, kinds=["guardrail.refused"]))
        async with running_operator(settings) as operator:
            await refuse_by_guardrail(operator)
            requests = await receiver.wait_for(3)
            items = await eventually(lambda: _delivered(operator, 1))
        assert len({request.delivery for request in requests}) == 1
        assert all(request.signed and request.fresh for request in requests)
        body = requests[0].body
        assert body["kind"] == "guardrail.refused"
        assert body["roomId"] == ROOM
        assert body["id"] == requests[0].delivery
        assert "Kick count (8) exceeds limit (5)" in body["summary"]
        assert len(body["details"]["wouldChange"]["toKick"]) == 8
        assert len(items) == 1
        assert items[0]["attempts"] == 3
        assert [attempt["statusCode"] for attempt in items[0]["history"]] == [500, 500, 200]


async def test_subscriptions_by_kind_and_room_and_the_slack_body(
    roomserver: RoomServerHandle, tmp_path: Path
) -> None:
    async with receiving() as receiver:
        slack = target(receiver, name="slack", format="slack", rooms=["room-notify-*"])
        elsewhere = target(receiver, name="elsewhere", rooms=["room-other-*"])
        only_stalls = target(receiver, name="stalls", kinds=["room.stalled"])
        settings = notifying(roomserver, tmp_path, slack, elsewhere, only_stalls)
        async with running_operator(settings) as operator:
            await refuse_by_guardrail(operator)
            requests = await receiver.wait_for(1)
            items = await eventually(lambda: _delivered(operator, 1))
        assert [item["target"] for item in items] == ["slack"]
        assert set(requests[0].body) == {"text"}
        assert requests[0].body["text"].startswith(f"*guardrail.refused* in `{ROOM}`:")


async def test_a_restart_mid_delivery_loses_nothing(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    hold = asyncio.Event()
    async with receiving(hold=hold) as receiver:
        settings = notifying(roomserver, tmp_path, target(receiver, kinds=["guardrail.refused"]))
        async with running_operator(settings) as operator:
            await refuse_by_guardrail(operator)
            first = await receiver.wait_for(1)  # the delivery is in flight, unanswered
            assert (await delivery_log(operator))[0]["status"] == "pending"
        hold.set()  # the operator stopped in the middle of the delivery
        async with running_operator(settings) as operator:
            requests = await receiver.wait_for(2)
            items = await eventually(lambda: _delivered(operator, 1))
        assert [request.delivery for request in requests] == [first[0].delivery] * 2
        assert len(items) == 1
        assert items[0]["id"] == first[0].delivery


async def test_drift_corrected_and_a_source_that_fails(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    async with receiving() as receiver:
        kinds = ["drift.corrected", "source.failed"]
        settings = notifying(roomserver, tmp_path, target(receiver, kinds=kinds))
        missing = {"name": "specs", "folder": tmp_path / "no-such-folder", "interval_seconds": 60}
        settings = settings.model_copy(update={"sources": [SourceSettings.model_validate(missing)]})
        async with running_operator(settings) as operator:
            failed = await receiver.wait_for(1)
            assert failed[0].kind == "source.failed"
            assert failed[0].body["source"] == "specs"
            assert "does not exist" in failed[0].body["summary"]
            assert (await operator.http.post("/apply", json=room_spec(ROOM))).status_code == 200
            async with asyncio.timeout(10):
                await operator.app.state.follower.connected.wait()
                await operator.controller.wait_idle()
            assert (await admin.delete(f"/room/{ROOM}/entities/E-agent-1")).status_code == 204
            requests = await receiver.wait_for(2)
        drift = requests[1]
        assert drift.kind == "drift.corrected"
        assert drift.signed
        assert drift.body["roomId"] == ROOM
        assert drift.body["details"]["trigger"] == "event"
        assert any("E-agent-1" in item for item in drift.body["details"]["applied"])
        assert drift.body["details"]["changedBy"] == ["admin"]  # the room server's token, not a member


async def test_drift_corrected_names_the_member_who_changed_the_room(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, tmp_path: Path
) -> None:
    """A member the operator declared deletes the seeded document itself: the operator puts it back and
    both receivers are told who changed it (the operator's own writes name nobody)."""
    async with receiving() as receiver, receiving() as slack_receiver:
        drift_only = target(receiver, kinds=["drift.corrected"])
        slack = target(slack_receiver, name="slack", format="slack", kinds=["drift.corrected"])
        settings = notifying(roomserver, tmp_path, drift_only, slack)
        async with running_operator(settings) as operator:
            applied = await operator.http.post("/apply", json=room_spec(ROOM, artifacts=1))
            assert applied.status_code == 200, applied.text
            async with asyncio.timeout(10):
                await operator.app.state.follower.connected.wait()
                await operator.controller.wait_idle()
            member = {"X-Entity-Id": "E-agent-1"}
            assert (await admin.delete(f"/rooms/{ROOM}/artifacts/doc-0", headers=member)).status_code == 204
            (drift,) = await receiver.wait_for(1)
            (slack_text,) = await slack_receiver.wait_for(1)
            await operator.controller.wait_idle()
        assert (await admin.get(f"/rooms/{ROOM}/artifacts/doc-0/hash")).status_code == 200  # put back
        assert (drift.kind, drift.signed) == ("drift.corrected", True)
        assert drift.body["details"]["trigger"] == "event"
        assert any("doc-0" in item for item in drift.body["details"]["applied"])
        assert drift.body["details"]["changedBy"] == ["E-agent-1"]
        assert drift.body["summary"].endswith("(changed by E-agent-1)")
        assert slack_text.body["text"].startswith(f"*drift.corrected* in `{ROOM}`: drift corrected:")
        assert slack_text.body["text"].endswith("(changed by E-agent-1)")
