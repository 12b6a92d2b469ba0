"""The request-scope middleware: every HTTP request is served in its own fence scope
(`storage/fencing.py`) and actor scope (`storage/actors.py`), so an operator replica's `X-RoomOp-Fence`
holds for that request's writes and no other's, and the events its writes append name its caller."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from roomserver.storage import actors, fencing


class RequestScope:
    """Pure ASGI: runs the app inside `fencing.request_scope()` and `actors.request_scope()` for each HTTP
    request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        with fencing.request_scope(), actors.request_scope():
            await self.app(scope, receive, send)
