"""The service's error vocabulary: `ApiError` becomes a JSON 4xx/5xx body naming what was wrong, and a
`Refused` from the acceptance rules becomes the answer its code calls for.

Bodies keep the reference's shapes: `{"errors": [...], "warnings": [], "code": ...}` for `/apply`,
`{"error": ..., "code": ..., "message": ...}` elsewhere (the room server's E1 shape), and
`{"error": ...}` for an unknown room or run.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from roomoperator.model.codes import ApiCode
from roomoperator.service.acceptance import Refused

DRAIN_BYTES = 1 << 20
"""Largest unread body a refusal lets the server read and drop (so that a client still sending it gets
the answer); a refusal of a larger or endless one closes the connection instead."""


def closing(request: Request) -> dict[str, str]:
    """The headers of a refusal answered before `request`'s body was read: `Connection: close` when what
    is left of it is larger than `DRAIN_BYTES` or of unknown length (chunked), else none."""
    declared = request.headers.get("content-length", "").strip()
    if "transfer-encoding" in request.headers:
        return {"Connection": "close"}
    if declared.isascii() and declared.isdigit() and int(declared) > DRAIN_BYTES:
        return {"Connection": "close"}
    return {}


class ApiError(Exception):
    """A request the operator refuses; `body` is sent as is with `status`."""

    def __init__(self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers

    @classmethod
    def e1(cls, status: int, error: str, code: ApiCode, message: str, **headers: str) -> ApiError:
        return cls(status, {"error": error, "code": code, "message": message}, headers=headers or None)

    @classmethod
    def apply(cls, code: ApiCode, errors: list[str], **extra: Any) -> ApiError:
        """A 400 from `/apply` in the reference shape, plus a machine-readable `code`."""
        return cls(400, {"errors": errors, "warnings": [], "code": code, **extra})

    @classmethod
    def invalid_request(cls, exc: ValidationError | RequestValidationError) -> ApiError:
        """400 `INVALID_REQUEST` naming each wrong field of a request (its query, headers or body)."""
        errors = [
            f"{'.'.join(str(part) for part in error['loc'] if part != 'body') or 'body'}: {error['msg']}"
            for error in exc.errors()
        ]
        return cls(400, {"errors": errors, "warnings": [], "code": ApiCode.INVALID_REQUEST})

    @classmethod
    def not_found(cls, message: str) -> ApiError:
        return cls(404, {"error": message})

    @classmethod
    def refused(cls, refusal: Refused) -> ApiError:
        """404 for an unknown room or revision; 409 for a version regression or a room another source
        owns; else 400. A version refusal names the versions compared and the revision kept."""
        if refusal.code is ApiCode.NOT_FOUND:
            return cls.not_found("; ".join(refusal.errors))
        versions = {
            "offeredVersion": refusal.offered,
            "currentVersion": refusal.desired,
            "currentRevision": refusal.revision,
        }
        status = 409 if refusal.code in (ApiCode.SPEC_VERSION_REGRESSION, ApiCode.SOURCE_CONFLICT) else 400
        return cls(status, {"errors": refusal.errors, "warnings": [], "code": refusal.code, **versions})


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


async def handle_refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return await handle_api_error(request, ApiError.refused(exc))
