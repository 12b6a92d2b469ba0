"""The FastAPI application: routers, error bodies in the reference's shapes, and the storage lifespan."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from roomcontract.routing import RouteTolerance
from roomserver import __version__
from roomserver.api import artifacts, batch, events, health, mcp, operator
from roomserver.api.conditional import NotModified
from roomserver.api.guard import BodyGuard
from roomserver.api.schemas import invalid_request
from roomserver.api.scoping import RequestScope
from roomserver.errors import RoomServerError
from roomserver.hub.routes import Hub
from roomserver.server import RoomServer
from roomserver.settings import ServerSettings


async def _room_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RoomServerError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _invalid_request(_: Request, exc: Exception) -> JSONResponse:
    """Body or parameter validation: 400 E1 `INVALID_REQUEST` naming every field (never FastAPI's 422)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(invalid_request(exc.errors()).body(), status_code=400)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown routes and methods answer E1 bodies too (the reference sent an empty 404)."""
    assert isinstance(exc, HTTPException)
    code = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(
        RoomServerError(exc.status_code, message, code=code).body(),
        status_code=exc.status_code,
        headers=exc.headers,
    )


def create_app(settings: ServerSettings) -> FastAPI:
    """A room server app; its lifespan opens the storage under `settings.data_dir` and closes it."""
    server = RoomServer(settings)
    hub = Hub(server)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await server.open()
        try:
            yield
        except asyncio.CancelledError:
            # A second Ctrl-C makes uvicorn skip the lifespan shutdown and the loop's end cancels this
            # task: the hub and the storage still close below, without a traceback in the log.
            pass
        finally:
            await hub.close()
            await server.close()

    app = FastAPI(
        title="RoomServer",
        version=__version__,
        description="Rooms, declared entities, versioned artifacts, policies and live events "
        "(wire-compatible with the reference RoomServer, plus the operator endpoints).",
        lifespan=lifespan,
    )
    app.add_middleware(RequestScope)  # innermost: the routes' writes see their request's fence and caller
    app.add_middleware(BodyGuard)  # inner to RouteTolerance: it sees the declared route spelling
    app.add_middleware(RouteTolerance, routes=lambda: app.routes)
    app.add_middleware(NotModified)  # outermost: a current conditional state read costs nothing more
    app.state.roomserver = server
    app.state.hub = hub
    app.add_exception_handler(RoomServerError, _room_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    for module in (health, operator, batch, artifacts, events, mcp):
        app.include_router(module.router)
    app.include_router(hub.router)
    return app
