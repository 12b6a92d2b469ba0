"""`POST /room/{roomId}/batch`: many writes to one room in one request and one transaction (the operator's
way to converge a room in one round trip; `docs/roomserver.md`, "Batched writes").

Each item is read with its single endpoint's own body model and checks, authorised with its single
endpoint's scope, applied (all valid items, in order, in one transaction) through its single endpoint's own
repository function, and answered with its single endpoint's status and body, or error body. Events are
published after the commit, and removed entities' live sessions closed, as the single endpoints do.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar, cast

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from roomcontract.batch import MAX_BATCH_ITEMS, PAYLOAD_KEY, BatchOp
from roomserver.api.dependencies import BATCH_BODY, ERRORS, Caller, RoomId, Server
from roomserver.api.operator import entity_answer
from roomserver.api.schemas import BatchOut, EntityBody, ManagerBody, PoliciesBody, invalid_request
from roomserver.auth import Principal
from roomserver.domain.changes import (
    SCOPE,
    Change,
    DeleteArtifact,
    PromoteArtifact,
    PutEntity,
    PutManager,
    PutPolicies,
    RemoveEntity,
    artifact_not_found,
    entity_not_found,
)
from roomserver.domain.events import RoomEvent
from roomserver.domain.identifiers import check_artifact_name, check_entity_id
from roomserver.domain.limits import InputError, load_json
from roomserver.domain.policies import RoomPolicies
from roomserver.errors import RoomServerError, artifact_error, bad_request
from roomserver.server import RoomServer
from roomserver.storage import repository
from roomserver.storage.repository import Written

router = APIRouter(tags=["operator"], responses=ERRORS)

M = TypeVar("M", bound=BaseModel)

_ITEM_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "required": ["items"],
    "properties": {
        "items": {
            "type": "array",
            "maxItems": MAX_BATCH_ITEMS,
            "items": {
                "type": "object",
                "required": ["op"],
                "description": "`op` and its one payload key: putEntity `entity` (the PUT entity body, "
                "entityId required), removeEntity `entityId`, putPolicies `policies`, putManager "
                "`manager`, deleteArtifact and promoteArtifact `name`",
                "properties": {"op": {"type": "string", "enum": [op.value for op in BatchOp]}},
            },
        }
    },
}


def _items(raw: bytes) -> list[Any]:
    """The body's `items` (whole-request errors: nothing is applied)."""
    try:
        body = load_json(raw, field="Body")
    except InputError as exc:
        raise bad_request("INVALID_REQUEST", str(exc)) from None
    if not isinstance(body, dict):
        raise bad_request("INVALID_REQUEST", "the body must be a JSON object")
    unknown = sorted(set(body) - {"items"})
    if unknown:
        raise bad_request("INVALID_REQUEST", f"{unknown[0]}: Extra inputs are not permitted")
    items = body.get("items")
    if not isinstance(items, list):
        raise bad_request("INVALID_REQUEST", "items: Input should be a valid list")
    if len(items) > MAX_BATCH_ITEMS:
        raise bad_request("BATCH_TOO_LARGE", f"items: at most {MAX_BATCH_ITEMS} per batch, not {len(items)}")
    return items


def _model(model: type[M], payload: Any) -> M:
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None


def _text(payload: Any, key: str) -> str:
    if not isinstance(payload, str):
        raise bad_request("INVALID_REQUEST", f"{key}: Input should be a valid string")
    return payload


def _op(item: Any) -> BatchOp:
    if not isinstance(item, dict):
        raise bad_request("INVALID_REQUEST", "item: Input should be a valid dictionary")
    try:
        op = BatchOp(str(item.get("op")))
    except ValueError:
        raise bad_request(
            "INVALID_REQUEST", f"op: must be one of: {', '.join(op.value for op in BatchOp)}"
        ) from None
    key = PAYLOAD_KEY[op]
    unknown = sorted(set(item) - {"op", key})
    if unknown:
        raise bad_request("INVALID_REQUEST", f"{unknown[0]}: Extra inputs are not permitted")
    if key not in item:
        raise bad_request("INVALID_REQUEST", f"{key}: Field required")
    return op


def _change(op: BatchOp, payload: Any, room_id: str, caller: Principal) -> Change:
    """One item as its single endpoint reads it: scope first, then its body's validation."""
    caller.require(SCOPE[op])
    key = PAYLOAD_KEY[op]
    match op:
        case BatchOp.PUT_ENTITY:
            return PutEntity(_model(EntityBody, payload).entity(room_id))
        case BatchOp.REMOVE_ENTITY:
            return RemoveEntity(check_entity_id(_text(payload, key)))
        case BatchOp.PUT_POLICIES:
            return PutPolicies(_model(PoliciesBody, payload).changes())
        case BatchOp.PUT_MANAGER:
            return PutManager(_model(ManagerBody, payload).record())
        case BatchOp.DELETE_ARTIFACT:
            return DeleteArtifact(check_artifact_name(_text(payload, key)))
        case BatchOp.PROMOTE_ARTIFACT:
            if not isinstance(payload, str) or not payload.strip():
                raise artifact_error(400, "InvalidPromoteRequest", "name is required")
            return PromoteArtifact(check_artifact_name(payload))


def _answer(
    server: RoomServer, room_id: str, change: Change, raw: object
) -> tuple[int, Any, list[RoomEvent]]:
    """The single endpoint's status and body for what the change did, and its events (or its error)."""
    if isinstance(raw, RoomServerError):
        raise raw
    match change:
        case PutEntity(entity):
            outcome, events = cast(tuple[str, list[RoomEvent]], raw)
            return 201 if outcome == "created" else 200, entity_answer(server, room_id, entity), events
        case RemoveEntity(entity_id):
            if raw is None:
                raise entity_not_found(room_id, entity_id)
            return 204, None, cast(list[RoomEvent], raw)
        case PutPolicies():
            policies, events = cast(tuple[RoomPolicies, list[RoomEvent]], raw)
            return 200, policies.to_wire(), events
        case PutManager():
            manager, events = cast(tuple[dict[str, Any], list[RoomEvent]], raw)
            return 200, manager, events
        case DeleteArtifact():
            if raw is None:
                raise artifact_not_found()
            return 204, None, cast(list[RoomEvent], raw)
        case PromoteArtifact():
            if raw is None:
                raise artifact_not_found()
            written = cast(Written, raw)
            return 201 if written.changed else 200, {"manifest": written.manifest.to_wire()}, written.events


@router.post(
    "/room/{roomId}/batch",
    response_model=BatchOut,
    dependencies=[BATCH_BODY],
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ITEM_SCHEMA}}}
    },
    responses={400: {"description": "not a batch, or BATCH_TOO_LARGE (nothing applied)"}, 413: {}},
)
async def batch(request: Request, room_id: RoomId, server: Server, caller: Caller) -> JSONResponse:
    """Apply many changes to one room in one transaction; a result per item (its single endpoint's status
    and body, or its error body). Each item needs its single endpoint's scope; invalid items are not
    applied, the valid ones are, in order."""
    items = _items(await request.body())
    results: list[dict[str, Any]] = []
    valid: list[tuple[int, Change]] = []
    for index, item in enumerate(items):
        op_name = item.get("op") if isinstance(item, dict) and isinstance(item.get("op"), str) else None
        result: dict[str, Any] = {"index": index, "op": op_name}
        results.append(result)
        try:
            op = _op(item)
            valid.append((index, _change(op, item[PAYLOAD_KEY[op]], room_id, caller)))
        except RoomServerError as exc:
            result.update(status=exc.status, error=exc.body())
    changes = [change for _, change in valid]
    applied = await server.db.run(repository.apply_changes, room_id, changes) if changes else []
    events: list[RoomEvent] = []
    removed: list[str] = []
    for (index, change), raw in zip(valid, applied, strict=True):
        try:
            status, body, produced = _answer(server, room_id, change, raw)
        except RoomServerError as exc:
            results[index].update(status=exc.status, error=exc.body())
            continue
        results[index]["status"] = status
        if body is not None:
            results[index]["body"] = body
        events += produced
        if isinstance(change, RemoveEntity):
            removed.append(change.entity_id)
    for entity_id in removed:
        await server.sessions.close(room_id, entity_id)
    return JSONResponse({"roomId": room_id, "results": results})
