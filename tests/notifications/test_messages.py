"""What a notification says, who subscribes to it and how it is signed: pure parts, no servers."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

from roomoperator.model.codes import NotificationKind
from roomoperator.notifications.messages import Notice, body_of, headers_of, wanted
from roomoperator.settings import NotificationTarget

AT = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def test_subscriptions_by_kind_and_room_pattern() -> None:
    target = NotificationTarget(
        name="t", url="http://x", kinds=["run.failed", "source.failed"], rooms=["room-a*"]
    )
    assert wanted(target, Notice(NotificationKind.RUN_FAILED, "room-abc123", "x"))
    assert not wanted(target, Notice(NotificationKind.RUN_FAILED, "room-bcd123", "x"))
    assert not wanted(target, Notice(NotificationKind.ROOM_STALLED, "room-abc123", "x"))
    assert wanted(target, Notice(NotificationKind.SOURCE_FAILED, "", "x", source="s"))


def test_bodies_and_signature() -> None:
    target = NotificationTarget(name="t", url="http://x", secret="k")
    notice = Notice(NotificationKind.ROOM_STALLED, "room-abc123", "stuck", "c-1", details={"n": 3})
    body = body_of(notice, target, delivery="d-1", at=AT, operator="9.9")
    assert json.loads(body) == {
        "id": "d-1",
        "kind": "room.stalled",
        "roomId": "room-abc123",
        "source": None,
        "correlationId": "c-1",
        "occurredAt": "2026-01-02T03:04:05Z",
        "summary": "stuck",
        "details": {"n": 3},
        "operatorVersion": "9.9",
    }
    headers = headers_of(target, body.encode(), delivery="d-1", kind="room.stalled", timestamp=1700000000)
    expected = hmac.new(b"k", b"1700000000." + body.encode(), hashlib.sha256).hexdigest()
    assert headers["X-RoomOp-Signature"] == f"sha256={expected}"
    assert headers["X-RoomOp-Delivery"] == "d-1"
    unsigned = NotificationTarget(name="u", url="http://x")
    assert "X-RoomOp-Signature" not in headers_of(unsigned, b"{}", delivery="d", kind="k", timestamp=1)
    slack = NotificationTarget(name="s", url="http://x", format="slack")
    assert json.loads(body_of(notice, slack, delivery="d", at=AT, operator="1")) == {
        "text": "*room.stalled* in `room-abc123`: stuck"
    }
