"""ASP.NET Core's route tolerances, kept by both servers so the reference's clients find their routes.

The reference matched route literals case-insensitively and ignored a trailing slash (`operator.md` §1.0):
`GET /Status/` reached `/status`. `RouteTolerance` is a pure ASGI middleware that rewrites such a path to
the declared spelling before routing; parameters (room ids, names) keep their case, and a path that no
route template matches is passed on unchanged (to answer 404 as before).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

Template = tuple[str | None, ...]
"""A route path as segments: a literal, or `None` for a `{parameter}`."""


def route_paths(routes: Iterable[object]) -> list[str]:
    """Every path of a Starlette/FastAPI route list, routers included by `include_router` walked into."""
    found: list[str] = []
    for route in routes:
        path = getattr(route, "path", None)
        if isinstance(path, str) and path:
            found.append(path)
        inner = getattr(getattr(route, "original_router", route), "routes", None)
        if inner is not None and inner is not routes and not path:
            found.extend(route_paths(inner))
    return found


def templates(paths: Iterable[str]) -> tuple[Template, ...]:
    """Route paths (`/status/rooms/{roomId}`) as segment templates; `{x:path}` routes are left out."""
    found: list[Template] = []
    for path in paths:
        if ":path}" in path:
            continue
        found.append(tuple(None if part.startswith("{") else part for part in path.strip("/").split("/")))
    return tuple(found)


def canonical_path(path: str, routes: tuple[Template, ...]) -> str:
    """`path` with a trailing slash dropped and its literal segments spelled as the one route that fits."""
    trimmed = path.rstrip("/") or "/"
    parts = tuple(trimmed.strip("/").split("/"))
    fitting = [route for route in routes if _fits(route, parts, exact=False)]
    if len(fitting) != 1 or any(_fits(route, parts, exact=True) for route in fitting):
        return trimmed
    spelled = (part if literal is None else literal for literal, part in zip(fitting[0], parts, strict=True))
    return "/" + "/".join(spelled)


def _fits(route: Template, parts: tuple[str, ...], *, exact: bool) -> bool:
    if len(route) != len(parts):
        return False
    pairs = zip(route, parts, strict=True)
    if exact:
        return all(literal in (None, part) for literal, part in pairs)
    return all(literal is None or literal.casefold() == part.casefold() for literal, part in pairs)


class RouteTolerance:
    """Rewrites `scope["path"]` of HTTP and WebSocket requests to the declared route spelling."""

    def __init__(self, app: ASGIApp, *, routes: Callable[[], Iterable[object]]) -> None:
        self._app = app
        self._route_list = routes
        self._routes: tuple[Template, ...] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            if self._routes is None:
                # Read on first use: routes are all registered by the time the first request arrives.
                self._routes = templates(route_paths(self._route_list()))
            path: str = scope["path"]
            fixed = canonical_path(path, self._routes)
            if fixed != path:
                # raw_path is the undecoded form of the old path: dropped, so nothing reads a stale one.
                scope = {key: value for key, value in scope.items() if key != "raw_path"} | {"path": fixed}
        await self._app(scope, receive, send)
