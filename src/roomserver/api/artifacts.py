"""Artifact routes: the reference's R4–R10 (same paths, parts, codes, E2 bodies); hash, versions, delete."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Final

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from roomcontract.scopes import ADMIN
from roomserver.api.dependencies import (
    ERRORS,
    UPLOAD_BODY,
    ArtifactWriter,
    Member,
    Reader,
    RoomId,
    Server,
)
from roomserver.api.schemas import (
    PROMOTE_SCHEMA,
    UPLOAD_SCHEMA,
    HashOut,
    ManifestEnvelope,
    ManifestList,
    VersionList,
)
from roomserver.api.uploads import receive_form
from roomserver.auth import Principal
from roomserver.domain.artifacts import ArtifactDraft, Manifest, parse_parents, parse_port, parse_upload_spec
from roomserver.domain.changes import artifact_not_found
from roomserver.domain.entities import Entity
from roomserver.domain.identifiers import ENTITY_ID, check_artifact_name, check_entity_id
from roomserver.domain.limits import InputError, check_metadata, load_json, parse_count
from roomserver.domain.timestamps import parse_iso, to_iso
from roomserver.errors import RoomServerError, artifact_error
from roomserver.storage import repository
from roomserver.storage.repository import ROOM_WORKSPACE

router = APIRouter(tags=["artifacts"], responses=ERRORS)

SERVICE_ORIGIN: Final = "E-SERVICE"  # origin.entity of writes by a service token without X-Entity-Id
_WRITE_DOC: Final[dict[str, Any]] = {
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": UPLOAD_SCHEMA}}}
}
_WRITE_RESPONSES: Final[dict[int | str, dict[str, Any]]] = {
    201: {"model": ManifestEnvelope, "description": "new version"},
    200: {
        "model": ManifestEnvelope,
        "description": "bytes and metadata equal the latest version: no new version",
    },
    413: {"description": "data exceeds the upload limit"},
}
_BYTES: Final[dict[int | str, dict[str, Any]]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the bytes"}
}


class _BlobResponse(FileResponse):
    """Streams a blob in 1 MiB reads (Starlette's 64 KiB means 16,384 thread hops per GiB)."""

    chunk_size = 1024 * 1024


def _own_workspace(member: Entity | None, entity_id: str) -> str:
    """Entity workspaces are private: X-Entity-Id must name their owner (reference PermissionService)."""
    check_entity_id(entity_id)
    if member is None:
        raise RoomServerError(401, "X-Entity-Id header is required", code="AUTH_REQUIRED")
    if member.id != entity_id:
        raise RoomServerError(403, "not allowed to access workspace", code="PERM_DENIED")
    return entity_id


def _author(member: Entity | None, caller: Principal) -> str:
    """Who a write is by (`createdBy`): the member of `X-Entity-Id`, else the token's name."""
    return member.id if member is not None else caller.name


def _manifest_response(manifest: Manifest, *, changed: bool) -> JSONResponse:
    return JSONResponse(
        {"manifest": manifest.to_wire()},
        status_code=201 if changed else 200,
        headers={"Location": manifest.location()},
    )


async def _write(
    request: Request,
    server: Server,
    room_id: str,
    owner: str | None,
    member: Entity | None,
    caller: Principal,
) -> Response:
    settings = server.settings
    form = await receive_form(
        request, server.blobs, max_data=settings.max_upload_bytes, max_field=settings.max_form_field_bytes
    )
    try:
        spec = form.fields.get("spec")
        if spec is None or form.upload is None:
            raise artifact_error(400, "MissingSpecOrData", "spec or data not provided")
        name, kind, workspace, tags, fingerprint, metadata = parse_upload_spec(
            spec, default_workspace="room" if owner is None else "entity"
        )
        origin = owner or (member.id if member else SERVICE_ORIGIN)
        claimed = form.fields.get("entityId", b"").decode("utf-8", errors="replace").strip()
        if claimed and claimed != origin:
            raise RoomServerError(403, f"entityId must name the caller ({origin})", code="PERM_DENIED")
        draft = ArtifactDraft(
            name=name,
            type=kind,
            workspace=workspace,
            tags=tags,
            fingerprint=fingerprint,
            metadata=metadata,
            parents=parse_parents(form.fields.get("parents")),
            port=parse_port(form.fields.get("port")),
            origin_entity=origin,
            created_by=_author(member, caller),
        )
    except BaseException:
        form.discard()
        raise
    upload = form.upload
    sha256 = upload.stored()  # a small upload of a known blob: no thread hop
    if sha256 is None:
        sha256 = await asyncio.to_thread(upload.commit)
    written = await server.db.run(
        repository.write_artifact, room_id, owner or ROOM_WORKSPACE, draft, sha256, upload.size
    )
    return _manifest_response(written.manifest, changed=written.changed)


@router.post(
    "/rooms/{roomId}/artifacts",
    openapi_extra=_WRITE_DOC,
    responses=_WRITE_RESPONSES,
    dependencies=[UPLOAD_BODY],
)
async def write_room_artifact(
    request: Request, room_id: RoomId, server: Server, caller: ArtifactWriter, member: Member
) -> Response:
    """R4: write a room artifact (a member with `X-Entity-Id`, or a service token seeding without it);
    the version records who wrote it (`createdBy`)."""
    return await _write(request, server, room_id, None, member, caller)


@router.post(
    "/rooms/{roomId}/entities/{entityId}/artifacts",
    openapi_extra=_WRITE_DOC,
    responses=_WRITE_RESPONSES,
    dependencies=[UPLOAD_BODY],
)
async def write_entity_artifact(
    request: Request, room_id: RoomId, entityId: str, server: Server, caller: ArtifactWriter, member: Member
) -> Response:
    """R5: write to the caller's own private workspace."""
    return await _write(request, server, room_id, _own_workspace(member, entityId), member, caller)


def _count(raw: str | None, error: str, field: str, *, minimum: int = 0) -> int | None:
    """A count from the query (ASCII digits, at most 2^63 - 1), or None when absent; else 400 `error`."""
    if raw is None:
        return None
    try:
        return parse_count(raw, field=field, minimum=minimum)
    except InputError as exc:
        raise artifact_error(400, error, str(exc)) from None


async def _read(
    server: Server, room_id: str, owner: str, name: str, version: str | None, download: str | None
) -> FileResponse:
    check_artifact_name(name)
    number = _count(version, "InvalidVersion", "version", minimum=1)
    manifest = await server.db.run(repository.get_manifest, room_id, owner, name, version=number)
    if manifest is None:
        raise artifact_not_found("Artifact version not found" if number else "Artifact not found")
    return _BlobResponse(
        server.blobs.path(manifest.sha256),
        media_type="application/octet-stream",
        filename=name if download == "true" else None,
        headers={"X-Artifact-Version": str(manifest.version), "X-Artifact-Sha256": manifest.sha256},
    )


@router.get("/rooms/{roomId}/artifacts/{name}", responses=_BYTES)
async def read_room_artifact(
    room_id: RoomId,
    name: str,
    server: Server,
    _: Reader,
    _member: Member,
    version: Annotated[str | None, Query(description="a positive version number")] = None,
    download: Annotated[str | None, Query(description="`true` adds Content-Disposition")] = None,
) -> FileResponse:
    """R6: the bytes of the latest version, or of version N (every version's bytes are kept)."""
    return await _read(server, room_id, ROOM_WORKSPACE, name, version, download)


@router.get("/rooms/{roomId}/entities/{entityId}/artifacts/{name}", responses=_BYTES)
async def read_entity_artifact(
    room_id: RoomId,
    entityId: str,
    name: str,
    server: Server,
    _: Reader,
    member: Member,
    version: Annotated[str | None, Query()] = None,
    download: Annotated[str | None, Query()] = None,
) -> FileResponse:
    """R7: the bytes of an artifact of the caller's own workspace."""
    return await _read(server, room_id, _own_workspace(member, entityId), name, version, download)


def _manifests(key: str, manifests: list[Manifest], **extra: Any) -> JSONResponse:
    """Manifests answered as the stdlib encodes them: metadata stored before the depth limit (or as deep
    as it allows) is read back as it was, never through a validator that gives up on nesting."""
    return JSONResponse({key: [m.to_wire() for m in manifests], **extra})


async def _list(server: Server, room_id: str, owner: str, request: Request) -> JSONResponse:
    query = request.query_params
    since_raw = query.get("since")
    since = None if since_raw is None else parse_iso(since_raw)
    if since_raw is not None and since is None:
        raise artifact_error(400, "InvalidSince", "since must be an ISO datetime")
    limit = _count(query.get("limit"), "InvalidLimit", "limit") or 0
    offset = _count(query.get("offset"), "InvalidOffset", "offset") or 0
    prefix, kind, entity = (query.get(k, "").lower() for k in ("prefix", "type", "entity"))
    items = [
        m
        for m in await server.db.run(repository.list_latest, room_id, owner)
        if m.name.lower().startswith(prefix)
        and (not kind or m.type.lower() == kind)
        and (not entity or m.origin_entity.lower() == entity)
        and (since is None or m.ts >= to_iso(since))  # stored timestamps sort as text
    ]
    items.sort(key=lambda m: m.ts, reverse=True)
    items = items[offset:]
    return _manifests("items", items[:limit] if limit else items)


_LIST_PARAMS: Final[dict[str, Any]] = {
    "parameters": [
        {"name": n, "in": "query", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in (
            ("prefix", "name prefix (case-insensitive)"),
            ("type", "artifact type"),
            ("entity", "origin entity"),
            ("since", "ISO date-time"),
            ("limit", "non-negative integer, 0 = all"),
            ("offset", "non-negative integer"),
        )
    ]
}


@router.get("/rooms/{roomId}/artifacts", response_model=ManifestList, openapi_extra=_LIST_PARAMS)
async def list_room_artifacts(
    request: Request, room_id: RoomId, server: Server, _: Reader, _member: Member
) -> JSONResponse:
    """R8: the latest version of each live room artifact, newest first, filtered and paged."""
    return await _list(server, room_id, ROOM_WORKSPACE, request)


@router.get(
    "/rooms/{roomId}/entities/{entityId}/artifacts", response_model=ManifestList, openapi_extra=_LIST_PARAMS
)
async def list_entity_artifacts(
    request: Request, room_id: RoomId, entityId: str, server: Server, _: Reader, member: Member
) -> JSONResponse:
    """R9: the same for the caller's own workspace."""
    return await _list(server, room_id, _own_workspace(member, entityId), request)


@router.get("/rooms/{roomId}/artifacts/{name}/hash", response_model=HashOut)
async def artifact_hash(
    room_id: RoomId, name: str, server: Server, _: Reader, _member: Member
) -> dict[str, str]:
    """The SHA-256 (lower-case hex) of the latest bytes of a room artifact."""
    manifest = await server.db.run(
        repository.get_manifest, room_id, ROOM_WORKSPACE, check_artifact_name(name)
    )
    if manifest is None:
        raise artifact_not_found()
    return {"hash": manifest.sha256}


@router.get("/rooms/{roomId}/artifacts/{name}/versions", response_model=VersionList)
async def artifact_versions(
    room_id: RoomId, name: str, server: Server, _: Reader, _member: Member
) -> JSONResponse:
    """Every version of a room artifact, oldest first; deleted (tombstoned) artifacts too."""
    found = await server.db.run(repository.list_versions, room_id, ROOM_WORKSPACE, check_artifact_name(name))
    if found is None:
        raise artifact_not_found()
    versions, deleted = found
    return _manifests("items", versions, deleted=deleted)


@router.delete("/rooms/{roomId}/artifacts/{name}", status_code=204, response_class=Response)
async def delete_artifact(
    room_id: RoomId, name: str, server: Server, _: ArtifactWriter, _member: Member
) -> Response:
    """Tombstone a room artifact: it leaves the state, its versions stay readable. `X-Entity-Id`, when
    given, must name an entity declared in the room (as on every artifact route)."""
    events = await server.db.run(repository.delete_artifact, room_id, check_artifact_name(name))
    if events is None:
        raise artifact_not_found()
    return Response(status_code=204)


def _promote_request(raw: bytes) -> tuple[str, str | None, str, dict[str, Any] | None]:
    """`(name, fromEntity, as, metadata)` from the body; keys matched case-insensitively, as the reference."""

    def invalid(message: str) -> RoomServerError:
        return artifact_error(400, "InvalidPromoteRequest", message)

    try:
        body = load_json(raw, field="Body")  # the reference's words: "Body must be valid JSON"
    except InputError as exc:
        raise invalid(str(exc)) from None
    if not isinstance(body, dict):
        raise invalid("Body must be a JSON object")
    keys = {key.lower(): value for key, value in body.items()}
    name, from_entity, target, metadata = (keys.get(k) for k in ("name", "fromentity", "as", "metadata"))
    if not isinstance(name, str) or not name.strip():
        raise invalid("name is required")
    if from_entity is not None and (not isinstance(from_entity, str) or not ENTITY_ID.fullmatch(from_entity)):
        raise invalid(f"fromEntity must match pattern: {ENTITY_ID.pattern}")
    if target is not None and not isinstance(target, str):
        raise invalid("as must be a string")
    try:
        metadata = check_metadata(metadata, field="metadata")
    except InputError as exc:
        raise invalid(str(exc)) from None
    return check_artifact_name(name), from_entity, check_artifact_name(target or name), metadata


@router.post(
    "/rooms/{roomId}/artifacts/promote",
    openapi_extra={
        "requestBody": {"required": True, "content": {"application/json": {"schema": PROMOTE_SCHEMA}}}
    },
    responses={
        201: {"model": ManifestEnvelope, "description": "promoted"},
        200: {"model": ManifestEnvelope, "description": "already promoted: nothing changed"},
        404: {"description": "ArtifactNotFound"},
    },
)
async def promote(
    request: Request, room_id: RoomId, server: Server, caller: ArtifactWriter, member: Member
) -> Response:
    """R10: promote a room artifact (`{name}`) or copy an entity's artifact to the room (`{fromEntity}`).

    Copying from a private workspace needs its owner (or an orchestrator) in `X-Entity-Id`, or, without
    the header, a token holding `room:admin`: artifact write alone never reads a member's private work.
    """
    name, from_entity, target, metadata = _promote_request(await request.body())
    if member is not None and member.kind != "orchestrator" and member.id != from_entity:
        raise RoomServerError(403, "not allowed to promote artifact", code="PERM_DENIED")
    if member is None and from_entity is not None and ADMIN not in caller.scopes:
        raise RoomServerError(
            403,
            f"copying from the workspace of {from_entity} needs X-Entity-Id: {from_entity} or scope {ADMIN}",
            code="PERM_DENIED",
        )
    if from_entity is None:
        written = await server.db.run(repository.promote, room_id, name)
        missing = "Artifact not found"
    else:
        written = await server.db.run(
            repository.promote_copy,
            room_id,
            from_entity,
            name,
            target=target,
            metadata=metadata,
            created_by=_author(member, caller),
        )
        missing = "Artifact not found in entity workspace"
    if written is None:
        raise artifact_not_found(missing)
    return _manifest_response(written.manifest, changed=written.changed)
