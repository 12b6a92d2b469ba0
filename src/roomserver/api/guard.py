"""The body guard: every request body is authorised, capped and timed before any of it is read.

A pure ASGI middleware in front of the routes. For a request that carries a body (`Content-Length` > 0
or `Transfer-Encoding`), it waits until the route first asks for the body (after routing: the route is
then `scope["route"]`, and FastAPI asks before it runs the route's dependencies) and, before passing on
one byte:

1. authorises the caller with the route's own scope (its `RequireScope` dependency): no or a wrong token
   is 401, a missing scope 403, so an unauthenticated body is never read, however large or malformed;
2. caps the body: `max_upload_body_bytes` for the two artifact uploads (routes marked `UploadBody`),
   `max_batch_body_bytes` for the batch route (marked `BatchBody`), `max_body_bytes` for every other
   route (also routes this package does not declare, such as the hub's);
   a larger `Content-Length` is 413 at once, a chunked body is counted as it streams and refused with
   413 as soon as it passes the cap;
3. times the body: a small body must arrive whole within `body_timeout_seconds`; an upload may not pause
   longer than that between two chunks; else 408.

Every refusal closes the connection (`Connection: close`), so the server never reads the rest of a body
it refused; so does any answer given before the body was read whole (a refused dependency, a 404). The
route sees the body end (`http.disconnect`), and whatever it would answer is replaced by the refusal.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final

from fastapi.routing import APIRoute
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roomcontract.scopes import Scope as TokenScope
from roomserver.api.dependencies import BatchBody, RequireScope, UploadBody
from roomserver.domain.limits import InputError, parse_count
from roomserver.errors import RoomServerError
from roomserver.server import RoomServer

_DISCONNECT: Final[Message] = {"type": "http.disconnect"}


@dataclass(frozen=True)
class _Declared:
    """What a route declares about its body: whether a token authorises it and with which scope (None:
    any valid token), and whether it is an upload or a batch (their own caps)."""

    authorised: bool = False
    scope: TokenScope | None = None
    upload: bool = False
    batch: bool = False


def _declared(route: APIRoute) -> _Declared:
    authorised, scope, upload, batch = False, None, False, False
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        if isinstance(dependency.call, RequireScope):
            authorised, scope = True, dependency.call.scope
        elif isinstance(dependency.call, UploadBody):
            upload = True
        elif isinstance(dependency.call, BatchBody):
            batch = True
        pending.extend(dependency.dependencies)
    return _Declared(authorised, scope, upload, batch)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _refusal(exc: RoomServerError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers={"Connection": "close"})


@dataclass
class _Reading:
    """One guarded body as it streams: bytes so far, the deadline of the next chunk, the refusal if any."""

    started: bool = False
    limit: int = 0
    upload: bool = False
    deadline: float = 0.0
    received: int = 0
    done: bool = False
    refused: RoomServerError | None = None
    answered: bool = False  # the route started its own answer before any refusal


class BodyGuard:
    """The middleware (see the module docstring); `app.state.roomserver` holds the settings and tokens.

    It acts when the route first asks for the body, after routing: the route is then known
    (`scope["route"]`), and nothing of the body has been read.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._declared: dict[int, tuple[APIRoute, _Declared]] = {}

    def _declared_by(self, route: object) -> _Declared:
        if not isinstance(route, APIRoute):
            return _Declared()  # no route, or not a FastAPI one: the default cap, its own authorisation
        known = self._declared.get(id(route))
        if known is None or known[0] is not route:
            known = self._declared[id(route)] = (route, _declared(route))
        return known[1]

    def _start(self, scope: Scope, reading: _Reading) -> None:
        """Authorise and cap a body before its first byte is read (raises the refusal)."""
        server: RoomServer = scope["app"].state.roomserver
        settings = server.settings
        declared = self._declared_by(scope.get("route"))
        if declared.authorised:
            principal = server.tokens.authenticate(_header(scope, b"authorization"))
            if declared.scope is not None:
                principal.require(declared.scope)
        reading.upload = declared.upload
        reading.limit = (
            settings.max_upload_body_bytes
            if declared.upload
            else settings.max_batch_body_bytes
            if declared.batch
            else settings.max_body_bytes
        )
        length = _header(scope, b"content-length")
        try:
            if length is not None and parse_count(length, field="Content-Length") > reading.limit:
                raise _too_large(reading.limit)
        except InputError as exc:
            raise RoomServerError(400, str(exc), code="INVALID_REQUEST") from None
        reading.deadline = asyncio.get_running_loop().time() + settings.body_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or (
            _header(scope, b"content-length") in (None, "0") and _header(scope, b"transfer-encoding") is None
        ):
            await self.app(scope, receive, send)
            return
        reading = _Reading()
        timeout: float = scope["app"].state.roomserver.settings.body_timeout_seconds

        async def guarded_receive() -> Message:
            if reading.refused is not None:
                return _DISCONNECT
            if reading.done:
                return await receive()  # after the body: the disconnect a streaming response listens for
            try:
                if not reading.started:
                    reading.started = True
                    self._start(scope, reading)
                async with asyncio.timeout_at(reading.deadline):
                    message = await receive()
            except RoomServerError as exc:
                reading.refused = exc
                return _DISCONNECT
            except TimeoutError:
                reading.refused = RoomServerError(
                    408, f"the request body did not arrive within {timeout:g} s", code="BODY_TIMEOUT"
                )
                return _DISCONNECT
            if message["type"] == "http.request":
                reading.received += len(message.get("body", b""))
                if reading.received > reading.limit:
                    reading.refused = _too_large(reading.limit)
                    return _DISCONNECT
                reading.done = not message.get("more_body", False)
                if reading.upload:
                    reading.deadline = asyncio.get_running_loop().time() + timeout
            return message

        async def guarded_send(message: Message) -> None:
            if reading.refused is not None and not reading.answered:
                return  # the refusal is the answer
            if message["type"] == "http.response.start" and not reading.done:
                # Answered before the body's end (a refused dependency, a 404): do not read the rest.
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"connection"]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            reading.answered = True
            await send(message)

        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if reading.refused is None or reading.answered:
                raise
            # The route failed on the body it was cut off from; the refusal is the answer.
        if reading.refused is not None and not reading.answered:
            await _refusal(reading.refused)(scope, receive, send)


def _too_large(limit: int) -> RoomServerError:
    message = f"the request body exceeds the limit of {limit} bytes"
    return RoomServerError(413, message, code="PAYLOAD_TOO_LARGE")
