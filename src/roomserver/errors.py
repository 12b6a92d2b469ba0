"""The one error type of the room server, carrying the reference's wire bodies (E1, E2 and E3 shapes)."""

from __future__ import annotations

from typing import Any

_E1_TITLES = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    408: "RequestTimeout",
    409: "Conflict",
    413: "PayloadTooLarge",
    503: "ServiceUnavailable",
}


class RoomServerError(Exception):
    """A refused request: HTTP status plus the JSON body the reference sends for it.

    E1 (`code` set): `{"error": <status title>, "code": CODE, "message": ...}` (reference ErrorFactory).
    E2 (`code` unset): `{"error": <PascalCase error>, "message": ...}` (reference artifact store).
    """

    def __init__(self, status: int, message: str, *, code: str | None = None, error: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.error = error or _E1_TITLES.get(status, "Error")

    def body(self) -> dict[str, Any]:
        if self.code is None:
            return {"error": self.error, "message": self.message}
        return {"error": self.error, "code": self.code, "message": self.message}


def bad_request(code: str, message: str) -> RoomServerError:
    """E1 400 with a specific code."""
    return RoomServerError(400, message, code=code)


def artifact_error(status: int, error: str, message: str) -> RoomServerError:
    """E2 error of the artifact routes (`{"error": "ArtifactNotFound", "message": ...}`)."""
    return RoomServerError(status, message, error=error)
