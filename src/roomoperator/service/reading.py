"""How the operator's API reads a request body: after the caller is authenticated (the routes' dependencies
run first, and no route declares a body for FastAPI to read before them), never beyond the route's cap (a
Content-Length over it is refused before a byte is read, a stream is cut where it passes it), as UTF-8,
and as JSON within the spec parser's limits (`parse_json_body`), keys matched case-insensitively to the
declared camelCase names (`spec/keycase.py`), as the reference's ASP.NET Core web defaults did.

Every refusal is an `ApiError` naming the field or the rule: 413 too large, 415 not JSON, 400 otherwise.
A refusal answered before the body's end carries `Connection: close` when the rest may be large.
`service/bodies.py` builds the `/apply` body on these; `read_model` reads the small JSON bodies.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect

from roomoperator.model.codes import ApiCode
from roomoperator.service.errors import DRAIN_BYTES, ApiError, closing
from roomoperator.spec.keycase import KeyCaseError, fold_keys
from roomoperator.spec.parsing import ParseError, parse_json_body
from roomoperator.spec.validation import format_path

DRAIN_SECONDS = 1.0
"""Longest a refusal waits for the rest of a body it drops (`drain`)."""
MAX_SMALL_BODY_BYTES = 64 * 1024
"""Largest body of `/mcp/load` and rollback: a few hundred providers, a revision number."""
M = TypeVar("M", bound=BaseModel)


def media_of(content_type: str) -> str:
    """The media type of a Content-Type header, lower case, without its parameters."""
    return content_type.split(";")[0].strip().lower()


def too_large(
    what: str, limit: int, setting: str | None = None, *, headers: dict[str, str] | None = None
) -> ApiError:
    """413 `BODY_TOO_LARGE` naming what was too large, its limit and the setting that sets it."""
    named = f" ({setting})" if setting else ""
    body = {"errors": [f"{what}: larger than {limit} bytes{named}"], "code": ApiCode.BODY_TOO_LARGE}
    return ApiError(413, body, headers=headers)


def declared_length(request: Request) -> int | None:
    """The request's Content-Length when it is a plain decimal number (None otherwise)."""
    declared = request.headers.get("content-length", "").strip()
    return int(declared) if declared.isascii() and declared.isdigit() else None


CLOSE = {"Connection": "close"}
"""A refusal in the middle of a body: the rest of it must not be taken for the next request."""


def chunks(request: Request, *, limit: int, setting: str | None = None) -> AsyncIterator[bytes]:
    """The body's chunks; 413 at once when its Content-Length is over `limit` (nothing read), or as soon
    as the bytes read pass it; 400 when the client goes away before its end."""
    declared = declared_length(request)
    if declared is not None and declared > limit:
        raise too_large("body", limit, setting, headers=closing(request))
    return _stream(request, limit=limit, setting=setting)


async def _stream(request: Request, *, limit: int, setting: str | None) -> AsyncIterator[bytes]:
    total = 0
    stream = request.stream()
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > limit:
                await drain(stream)
                raise too_large("body", limit, setting, headers=CLOSE)
            yield chunk
    except ClientDisconnect:
        raise ApiError.apply(ApiCode.INVALID_BODY, ["body: the connection closed before its end"]) from None


async def drain(rest: AsyncIterator[bytes]) -> None:
    """Read and drop what is left of a refused body, at most `DRAIN_BYTES` for at most `DRAIN_SECONDS`:
    a client still sending a body a little too large then reads the 413 instead of a reset (the answer
    closes the connection either way). A larger or slower rest is cut off; errors of the rest (a body
    cut short, another refusal of it) are the first refusal's, not news."""
    dropped = 0
    with contextlib.suppress(ApiError, ClientDisconnect, TimeoutError):
        async with asyncio.timeout(DRAIN_SECONDS):
            async for chunk in rest:
                dropped += len(chunk)
                if dropped > DRAIN_BYTES:
                    return


async def read_body(request: Request, *, limit: int) -> bytes:
    """The whole body, at most `limit` bytes (see `chunks`)."""
    raw = bytearray()
    async for chunk in chunks(request, limit=limit):
        raw += chunk
    return bytes(raw)


def text_of(raw: bytes) -> str:
    """A body as text; 400 naming the first byte that is not UTF-8."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError.apply(ApiCode.INVALID_BODY, [f"body: not UTF-8 text (byte {exc.start})"]) from None


def json_of(text: str, *, code: ApiCode) -> Any:
    """A JSON body's data within the parser's limits; 400 naming the line or the field path."""
    try:
        return parse_json_body(text)
    except ParseError as exc:
        if exc.path is not None:
            shown = format_path(exc.path[:6]) + ("..." if len(exc.path) > 6 else "")
            raise ApiError.apply(code, [f"{shown or 'body'}: {exc.message}"]) from None
        where = f" at line {exc.mark[0]} column {exc.mark[1]}" if exc.mark else ""
        raise ApiError.apply(code, [f"body: {exc.message}{where}"]) from None


def folded(data: Any, model: type[BaseModel], *, code: ApiCode) -> Any:
    """`data` with its keys folded to `model`'s names; 400 naming two keys that fold to one."""
    try:
        return fold_keys(data, model)
    except KeyCaseError as exc:
        raise ApiError.apply(code, [str(exc)]) from None


def _json_media(request: Request) -> None:
    media = media_of(request.headers.get("content-type", "application/json"))
    if media != "application/json" and not media.endswith("+json"):
        raise ApiError(
            415,
            {"errors": [f"Content-Type: {media} is not JSON"], "code": ApiCode.UNSUPPORTED_MEDIA_TYPE},
            headers=closing(request),
        )


async def read_model(request: Request, model: type[M], *, limit: int = MAX_SMALL_BODY_BYTES) -> M:
    """A JSON body as `model`: at most `limit` bytes, keys matched case-insensitively; 400 naming each
    field that is wrong (`INVALID_REQUEST`), 413 when too large, 415 when not JSON."""
    _json_media(request)
    data = folded(
        json_of(text_of(await read_body(request, limit=limit)), code=ApiCode.INVALID_BODY),
        model,
        code=ApiCode.INVALID_REQUEST,
    )
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError.invalid_request(exc) from None


def inline_schema(model: type[BaseModel]) -> dict[str, Any]:
    """`model`'s JSON Schema with its `$defs` written in place (a request body's schema in the OpenAPI
    document, where `#/$defs/...` would point nowhere)."""
    schema = model.model_json_schema(by_alias=True)
    definitions: dict[str, Any] = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved
