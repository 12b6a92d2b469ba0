"""Every route of both servers, read from the apps' own route tables, with the guard each one declares.

The security matrix (`test_security_matrix.py`) walks these, so a route added to either server is
checked without a line of test code, as long as it declares its guard the usual way (a `RequireScope`
dependency on the room server, `caller_of`/`reader_of`/`prober_of` on the operator). A route that
declares none and is not listed here as open or as authenticating itself fails the matrix until it is
classified.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.routing import Route

from roomcontract.scopes import READ
from roomoperator.service.dependencies import caller_of, prober_of, reader_of
from roomserver.api.dependencies import RequireScope


class Guard(enum.Enum):
    """What a route asks of its caller, beyond a scope (`Endpoint.scope`)."""

    OPEN = "open"  # nothing: the API description, `/`, the room server's `/health`
    PROBE = "probe"  # the operator's `/health` and `/metrics`: open while `api.open_probes` is on
    TOKEN = "token"  # any valid token (`/auth/whoami`, the batch, which checks each item's scope)
    SCOPE = "scope"  # a valid token holding `scope`
    SIGNED = "signed"  # no token: the body's signature by a configured secret (the operator's `/hooks/git`)


@dataclass(frozen=True)
class Endpoint:
    method: str  # `WS` for a WebSocket route
    path: str  # the template, `/rooms/{roomId}/artifacts/{name}`
    guard: Guard
    scope: str | None = None
    session: bool = False  # the hub's transports: the right scope still needs a negotiated connection id

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


DESCRIPTION = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
ROOMSERVER_OPEN = DESCRIPTION | {"/", "/health"}
ROOMSERVER_SELF_AUTHENTICATED = {
    ("POST", "/room/negotiate"): READ,
    ("WS", "/room"): READ,
    ("GET", "/room"): READ,  # long polling, Server-Sent Events
    ("POST", "/room"): READ,  # a message sent over long polling or SSE
    ("DELETE", "/room"): READ,  # a long-polling client ends its connection
}
"""The hub's routes check the token themselves (`Hub.authenticate`: header or `access_token`)."""
OPERATOR_SIGNED = frozenset({("POST", "/hooks/git")})
"""Routes authenticated by a signature of their body, not by a token (git push webhooks)."""


def _leaves(routes: Iterable[object]) -> Iterator[object]:
    for route in routes:
        inner = getattr(route, "original_router", None)  # an included router (FastAPI >= 0.120)
        yield from _leaves(inner.routes) if inner is not None else (route,)


def _dependencies(route: APIRoute) -> Iterator[object]:
    pending = list(route.dependant.dependencies)
    while pending:
        dependency = pending.pop()
        yield dependency.call
        pending.extend(dependency.dependencies)


def _methods(route: object) -> list[str]:
    if isinstance(route, APIWebSocketRoute):
        return ["WS"]
    assert isinstance(route, Route), route
    return sorted(set(route.methods or ()) - {"HEAD"})


def roomserver_endpoints(app: FastAPI) -> list[Endpoint]:
    found = []
    for route in _leaves(app.routes):
        for method in _methods(route):
            path: str = getattr(route, "path")  # noqa: B009 (every leaf route has one)
            calls = list(_dependencies(route)) if isinstance(route, APIRoute) else []
            scopes = [call.scope for call in calls if isinstance(call, RequireScope)]
            if scopes and scopes[0] is not None:
                found.append(Endpoint(method, path, Guard.SCOPE, scopes[0]))
            elif scopes:  # `RequireScope(None)`: any valid token (the batch checks each item's scope)
                found.append(Endpoint(method, path, Guard.TOKEN))
            elif (method, path) in ROOMSERVER_SELF_AUTHENTICATED:
                scope = ROOMSERVER_SELF_AUTHENTICATED[method, path]
                found.append(Endpoint(method, path, Guard.SCOPE, scope, session=path == "/room"))
            elif path in ROOMSERVER_OPEN:
                found.append(Endpoint(method, path, Guard.OPEN))
            else:
                raise AssertionError(f"room server route {method} {path} declares no guard: classify it")
    return found


def operator_endpoints(app: FastAPI) -> list[Endpoint]:
    guards = {caller_of: "operator:write", reader_of: "operator:read"}
    found = []
    for route in _leaves(app.routes):
        for method in _methods(route):
            path: str = getattr(route, "path")  # noqa: B009
            calls = list(_dependencies(route)) if isinstance(route, APIRoute) else []
            scopes = [guards[call] for call in calls if call in guards]
            if "operator:write" in scopes:
                found.append(Endpoint(method, path, Guard.SCOPE, "operator:write"))
            elif scopes:
                found.append(Endpoint(method, path, Guard.SCOPE, "operator:read"))
            elif prober_of in calls:
                found.append(Endpoint(method, path, Guard.PROBE))
            elif path in DESCRIPTION:
                found.append(Endpoint(method, path, Guard.OPEN))
            elif (method, path) in OPERATOR_SIGNED:
                found.append(Endpoint(method, path, Guard.SIGNED))
            else:
                raise AssertionError(f"operator route {method} {path} declares no guard: classify it")
    return found
