"""The steady state's cheapest answer: a conditional room-state read whose ETag is still current is answered
`304` by a pure ASGI middleware in front of the app, before routing, dependencies or the database.

An operator re-reads every room it manages once per interval; for a converged room that read is a `304`,
so at a thousand rooms it is the server's most frequent request. `GET /room/{roomId}/state` with
`If-None-Match` is answered here when the caller's token holds `room:read`, the room id is valid and
`domain/freshness.py` knows the room's ETag without reading it (nothing changed since the ETag was built)
and the header names it. In every other case (no or a bad token, a bad room id, an unknown or stale ETag,
another spelling of the path) the request goes on to the route, which answers it as always
(`api/operator.py`).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

from roomcontract.scopes import READ
from roomserver.domain.identifiers import check_room_id
from roomserver.errors import RoomServerError
from roomserver.server import RoomServer

_STATE_PATH: Final = re.compile(r"/room/([^/]+)/state")


def resources_of(server: RoomServer, room_id: str) -> tuple[str, bytes]:
    """The room's `resources` as state JSON, and its digest (what a remembered ETag was built with)."""
    resources = json.dumps(server.providers.resources(room_id=room_id))
    return resources, hashlib.blake2b(resources.encode(), digest_size=8).digest()


def names(if_none_match: str, etag: str) -> bool:
    """Whether an `If-None-Match` value names `etag` (weak or strong, in a list)."""
    return etag in (t.strip().removeprefix("W/") for t in if_none_match.split(","))


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


class NotModified:
    """The middleware (see the module docstring); `app.state.roomserver` holds the tokens and state tags."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    def _current(self, scope: Scope) -> str | None:
        """The ETag to answer `304` with, or None to let the route answer."""
        if scope["type"] != "http" or scope["method"] != "GET":
            return None
        found = _STATE_PATH.fullmatch(scope["path"])
        if_none_match = _header(scope, b"if-none-match")
        if found is None or if_none_match is None:
            return None
        server: RoomServer = scope["app"].state.roomserver
        try:
            server.tokens.authenticate(_header(scope, b"authorization")).require(READ)
            room_id = check_room_id(found.group(1))
        except RoomServerError:
            return None  # the route answers the refusal
        etag = server.state_tags.current(room_id, resources_of(server, room_id)[1])
        return etag if etag is not None and names(if_none_match, etag) else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        etag = self._current(scope)
        if etag is None:
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": 304, "headers": [(b"etag", etag.encode())]})
        await send({"type": "http.response.body", "body": b""})
