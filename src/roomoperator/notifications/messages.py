"""What a notification says and how it is signed (pure): a `Notice` (kind, room, summary, details), the
JSON body a target receives (the operator's own shape, or a Slack incoming-webhook `{"text": ...}`), and
the signature headers: `X-RoomOp-Signature: sha256=<hex>` is the HMAC-SHA256 under the target's secret of
`<timestamp>.<body>`, with `X-RoomOp-Timestamp` (Unix seconds, so a receiver can refuse replays of old
deliveries) and `X-RoomOp-Delivery`, the idempotency key (the same on every retry of one delivery)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from roomoperator.model.codes import NotificationKind
from roomoperator.settings import NotificationTarget

SIGNATURE = "X-RoomOp-Signature"
TIMESTAMP = "X-RoomOp-Timestamp"
DELIVERY = "X-RoomOp-Delivery"
EVENT = "X-RoomOp-Event"


@dataclass(frozen=True)
class Notice:
    """Something that needs a person: `room_id` "" for a source's failure (`source` names it)."""

    kind: NotificationKind
    room_id: str
    summary: str
    correlation_id: str = ""
    source: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def wanted(target: NotificationTarget, notice: Notice) -> bool:
    """Does `target` subscribe to `notice` (its kind, and its room by one of the target's globs)?"""
    if notice.kind not in target.kinds:
        return False
    return not notice.room_id or any(fnmatch.fnmatchcase(notice.room_id, pattern) for pattern in target.rooms)


def body_of(
    notice: Notice, target: NotificationTarget, *, delivery: str, at: dt.datetime, operator: str
) -> str:
    """The JSON text `target` receives for `notice`."""
    if target.format == "slack":
        where = f" in `{notice.room_id}`" if notice.room_id else ""
        return json.dumps({"text": f"*{notice.kind.value}*{where}: {notice.summary}"})
    document = {
        "id": delivery,
        "kind": notice.kind.value,
        "roomId": notice.room_id or None,
        "source": notice.source,
        "correlationId": notice.correlation_id or None,
        "occurredAt": at.isoformat().replace("+00:00", "Z"),
        "summary": notice.summary,
        "details": notice.details,
        "operatorVersion": operator,
    }
    return json.dumps(document, separators=(",", ":"), sort_keys=False)


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """`sha256=` and the hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def headers_of(
    target: NotificationTarget, body: bytes, *, delivery: str, kind: str, timestamp: int
) -> dict[str, str]:
    """The headers of one delivery attempt (signed when the target has a secret)."""
    headers = {"Content-Type": "application/json", TIMESTAMP: str(timestamp), DELIVERY: delivery, EVENT: kind}
    if target.secret is not None:
        headers[SIGNATURE] = signature(target.secret.get_secret_value(), body, timestamp)
    return headers
