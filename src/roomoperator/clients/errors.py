"""The small vocabulary of room-server failures the engine and the service act on.

Every failure of a room-server call is a `RoomServerError` with the HTTP `status` (None when no answer
came back), a machine-readable `code` and a human `message`. `transient` says whether the same call may
succeed later (connection errors, timeouts, 429, 5xx): only those are retried, honouring `retry_after`.
`error_from_answer` and `error_from_failure` are the one mapping from what the HTTP library saw (an answer
with a status, or an exception and no answer) to these classes; the client's request funnel calls them.
"""

from __future__ import annotations

import email.utils
import json
import os
import time

import aiohttp


class RoomServerError(Exception):
    """A room-server call failed; the subclass says how the engine should react."""

    transient = False

    def __init__(
        self, status: int | None, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status is not None else ""
        return f"{prefix}{self.code}: {self.message}"


class Unreachable(RoomServerError):
    """No answer: connection refused, DNS failure, timeout."""

    transient = True


class Transient(RoomServerError):
    """429 or 5xx: worth retrying later (after `retry_after` seconds when the server said so)."""

    transient = True


class Unauthorized(RoomServerError):
    """401: the token is missing or unknown. The run aborts."""


class Forbidden(RoomServerError):
    """403: the token lacks a scope."""


class NotFound(RoomServerError):
    """404."""


class Conflict(RoomServerError):
    """409."""


class Fenced(Conflict):
    """409 `FENCED`: the room server has seen a newer fencing token for the room than the one this write
    carried (`roomcontract/fencing.py`): another operator replica owns the room now. Never retried; the
    run stops and the replica drops its claim on the room."""


FENCED_CODE = "FENCED"
"""The room server's error code for a write refused by fencing (`docs/contract.md`, "Fencing")."""


class Rejected(RoomServerError):
    """Any other 4xx: the request itself is wrong and will stay wrong."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta-seconds or HTTP-date); None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_from_answer(
    status: int, *, reason: str | None, body: bytes, retry_after: str | None
) -> RoomServerError:
    """The error for a non-2xx answer, with the server's E1/E2 `code` and `message` when it sent them."""
    code, message = f"HTTP_{status}", reason or f"status {status}"
    try:
        document = json.loads(body) if body else None
    except ValueError:
        document = None
    if isinstance(document, dict):
        code = str(document.get("code") or document.get("error") or code)
        message = str(document.get("message") or document.get("detail") or message)
    by_status: dict[int, type[RoomServerError]] = {
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        409: Conflict,
    }
    if status == 429 or status >= 500:
        return Transient(status, code, message, retry_after=parse_retry_after(retry_after))
    if status == 409 and code == FENCED_CODE:
        return Fenced(status, code, message)
    return by_status.get(status, Rejected)(status, code, message)


def error_from_failure(exc: BaseException, *, base_url: str, what: str) -> RoomServerError:
    """The error for a call (`what`, e.g. "GET /health") that got no usable answer, in one sentence that
    says what was tried, what failed and what to do: `Unreachable` (worth retrying) for a refused, broken
    or garbled connection and for a timeout; `INVALID_URL` for a URL that is not http(s), and
    `INVALID_RESPONSE` for a redirect loop, which will not heal by themselves."""
    if isinstance(exc, aiohttp.NonHttpUrlClientError | aiohttp.InvalidURL):
        message = (
            f"{what}: the room server URL {base_url!r} is not an http:// or https:// URL;"
            " give it with its scheme, for example http://127.0.0.1:5000"
        )
        return RoomServerError(None, "INVALID_URL", message)
    if isinstance(exc, aiohttp.TooManyRedirects):
        return RoomServerError(None, "INVALID_RESPONSE", f"{what} at {base_url}: {exc}")
    if isinstance(exc, TimeoutError):
        return Unreachable(
            None,
            "ROOM_SERVER_UNREACHABLE",
            f"{what} at {base_url} timed out: the room server did not answer in time;"
            " check that it is running and not overloaded (or raise room_server.timeout_seconds)",
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        errno = exc.os_error.errno
        reason = os.strerror(errno) if errno else exc.os_error.strerror or str(exc.os_error)
        return Unreachable(
            None,
            "ROOM_SERVER_UNREACHABLE",
            f"{what}: cannot connect to the room server at {base_url} ({reason.lower()});"
            " check that it is running there, or give its URL with --server / RoomServer__BaseUrl",
        )
    detail = str(exc) or type(exc).__name__
    return Unreachable(
        None,
        "ROOM_SERVER_UNREACHABLE",
        f"{what} at {base_url} failed: the connection broke ({detail}); it is retried on the next run",
    )
