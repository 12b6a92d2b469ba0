"""The service's error vocabulary: `ApiError` becomes a JSON 4xx/5xx body naming what was wrong.

Bodies keep the reference's shapes: `{"errors": [...], "warnings": [], "code": ...}` for `/apply`,
`{"error": ..., "code": ..., "message": ...}` elsewhere (the room server's E1 shape).
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A request the operator refuses; `body` is sent as is with `status`."""

    def __init__(self, status: int, body: dict[str, Any], *, headers: dict[str, str] | None = None) -> None:
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers

    @classmethod
    def e1(cls, status: int, error: str, code: str, message: str, **headers: str) -> ApiError:
        return cls(status, {"error": error, "code": code, "message": message}, headers=headers or None)

    @classmethod
    def apply(cls, code: str, errors: list[str], **extra: Any) -> ApiError:
        """A 400 from `/apply` in the reference shape, plus a machine-readable `code`."""
        return cls(400, {"errors": errors, "warnings": [], "code": code, **extra})


async def handle_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)
