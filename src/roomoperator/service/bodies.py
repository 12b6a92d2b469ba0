"""Request bodies of the operator API: the RoomSpec of an `/apply` body (JSON `{"spec": ...}`, a bare JSON
RoomSpec, or YAML), decoded, parsed and validated, with every failure an `ApiError` naming the problem;
and the `/mcp/load` body.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from fastapi import Request
from pydantic import BaseModel, ConfigDict

from roomoperator.model.codes import ApiCode
from roomoperator.service.errors import ApiError
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import load_data, load_text
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.parsing import MAX_DOCUMENT_BYTES

YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
SPEC_KEYS = {"apiVersion", "kind", "metadata"}


async def read_spec(request: Request, *, base_dir: Path) -> RoomSpec:
    """The RoomSpec of an `/apply` body, read up to `MAX_DOCUMENT_BYTES`."""
    media = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ApiError(
                413,
                {"errors": [f"body: larger than {MAX_DOCUMENT_BYTES} bytes"], "code": ApiCode.BODY_TOO_LARGE},
            )
    if not raw.strip():
        raise ApiError.apply(ApiCode.INVALID_BODY, ["body: a RoomSpec is required"])
    # Parsing and validating a large spec is CPU work: keep it off the event loop.
    return await anyio.to_thread.run_sync(parse_spec, bytes(raw), media, base_dir)


def parse_spec(raw: bytes, media: str, base_dir: Path) -> RoomSpec:
    """Decode, parse and validate one `/apply` body."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError.apply(ApiCode.INVALID_BODY, [f"body: not UTF-8 text (byte {exc.start})"]) from None
    try:
        if media in YAML_TYPES:
            loaded = load_text(text, source="<request>", base_dir=base_dir)
            if len(loaded) != 1:
                raise ApiError.apply(
                    ApiCode.INVALID_BODY, [f"body: one RoomSpec document expected, got {len(loaded)}"]
                )
            return loaded[0].spec
        if media != "application/json" and not media.endswith("+json"):
            raise ApiError(
                415,
                {
                    "errors": [f"Content-Type: {media} is not JSON or YAML"],
                    "code": ApiCode.UNSUPPORTED_MEDIA_TYPE,
                },
            )
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ApiError.apply(
                ApiCode.INVALID_BODY,
                [f"body: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"],
            ) from None
        except RecursionError:
            raise ApiError.apply(ApiCode.INVALID_BODY, ["body: JSON nested too deeply"]) from None
        if isinstance(data, dict) and "spec" in data and not SPEC_KEYS & data.keys():
            data = data["spec"]
            if data is None:
                raise ApiError.apply(ApiCode.INVALID_SPEC, ["spec: a RoomSpec is required"])
        return load_data(data, source="<request>", base_dir=base_dir)
    except SpecError as exc:
        raise ApiError.apply(
            ApiCode.INVALID_SPEC,
            [f"{issue.path or 'spec'}: {issue.message}" for issue in exc.issues],
            issues=[issue.to_json() for issue in exc.issues],
        ) from None


class McpProvider(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    url: str
    visibility: str | None = None


class McpLoadRequest(BaseModel):
    """`POST /mcp/load`: the providers to forward to the room server (unknown fields are dropped)."""

    model_config = ConfigDict(extra="ignore")

    providers: list[McpProvider]
