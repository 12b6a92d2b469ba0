"""The room writes of the room-server client in both forms: the single endpoint of each (method, path,
body) and an item of `POST /room/{roomId}/batch` (chunking, and each item's result mapped exactly as its
single call's answer is: `WriteResult`). `clients/roomserver.py` sends them; the engine reads the results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from roomcontract.batch import MAX_BATCH_BYTES, MAX_BATCH_ITEMS, BatchOp
from roomcontract.entities import Membership
from roomoperator.clients.errors import RoomServerError, error_from_answer
from roomoperator.model.writes import Write

JsonBody = dict[str, Any]

MAX_REQUEST_BYTES = MAX_BATCH_BYTES * 3 // 4
"""Body bytes the client puts in one batch request: room under the server's default cap."""

REMOVALS = frozenset({BatchOp.REMOVE_ENTITY, BatchOp.DELETE_ARTIFACT})
"""Writes for which a 404 (already absent) is done."""
BODYLESS = frozenset({BatchOp.REMOVE_ENTITY, BatchOp.DELETE_ARTIFACT})


@dataclass(frozen=True)
class WriteResult:
    """What one write answered: its status and JSON body, or the error it met (as its single call would
    have raised it). A removal of something absent (404) is done and `absent`."""

    status: int
    body: Any = None
    error: RoomServerError | None = None

    @property
    def created(self) -> bool:
        return self.status == 201

    @property
    def absent(self) -> bool:
        return self.error is None and self.status == 404


def path_part(value: str) -> str:
    """`value` as one URL path segment."""
    return quote(value, safe="")


def manager_body(*, name: str, url: str | None, membership: Membership) -> JsonBody:
    """The body of `PUT /rooms/{roomId}/manager` (and of a batch's `putManager`)."""
    return {"name": name, "url": url, "membership": membership}


def single_route(room_id: str, write: Write) -> tuple[str, str]:
    """The single endpoint of `write`: method and path."""
    room = path_part(room_id)
    if write.op is BatchOp.PUT_ENTITY:
        return "PUT", f"/room/{room}/entities/{path_part(str(write.payload['entityId']))}"
    if write.op is BatchOp.REMOVE_ENTITY:
        return "DELETE", f"/room/{room}/entities/{path_part(write.payload)}"
    if write.op is BatchOp.PUT_POLICIES:
        return "PUT", f"/rooms/{room}/policies"
    if write.op is BatchOp.PUT_MANAGER:
        return "PUT", f"/rooms/{room}/manager"
    if write.op is BatchOp.DELETE_ARTIFACT:
        return "DELETE", f"/rooms/{room}/artifacts/{path_part(write.payload)}"
    return "POST", f"/rooms/{room}/artifacts/promote"


def single_body(write: Write) -> Any:
    return {"name": write.payload} if write.op is BatchOp.PROMOTE_ARTIFACT else write.payload


def json_or_none(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


def chunks(writes: Sequence[Write]) -> list[list[Write]]:
    """`writes` in order, cut where a batch would pass `MAX_BATCH_ITEMS` or about `MAX_REQUEST_BYTES`."""
    chunks: list[list[Write]] = []
    current: list[Write] = []
    size = 0
    for write in writes:
        cost = len(json.dumps(write.to_item(), separators=(",", ":"))) + 1
        if current and (len(current) == MAX_BATCH_ITEMS or size + cost > MAX_REQUEST_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(write)
        size += cost
    if current:
        chunks.append(current)
    return chunks


def item_result(write: Write, answer: Any) -> WriteResult:
    """One batch result as a `WriteResult`, its error mapped exactly as the single call's answer is."""
    if not isinstance(answer, dict) or not isinstance(answer.get("status"), int):
        return WriteResult(
            0, error=RoomServerError(None, "INVALID_RESPONSE", "batch result without a status")
        )
    status: int = answer["status"]
    if 200 <= status < 300:
        return WriteResult(status, answer.get("body"))
    if status == 404 and write.op in REMOVALS:
        return WriteResult(404)
    error = answer.get("error")
    detail = error if isinstance(error, dict) else {}
    message = detail.get("message") or (error if isinstance(error, str) else None) or detail.get("error")
    field = detail.get("field")
    wire = {
        "code": detail.get("code") or detail.get("error"),
        "message": f"{message} ({field})" if message and field else message,
    }
    return WriteResult(
        status,
        error=error_from_answer(status, reason=None, body=json.dumps(wire).encode(), retry_after=None),
    )
