"""A fault-injecting HTTP proxy for tests: a real ASGI server on 127.0.0.1 in front of the real room server.

Rules say which requests fail and how (a status with headers, e.g. 503, or 429 with `Retry-After`; or no
answer at all, `hang=True`, until the client times out), for how many matching requests; everything else
is forwarded unchanged. `hits` records every request seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.support.servers import serve_app


@dataclass
class Fault:
    """Fail the next `times` requests matching `method` and the `path` regex."""

    method: str
    path: str
    status: int = 503
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    hang: bool = False


class FaultProxy:
    """The proxy's rules and record; `app()` is what `fault_proxy` serves."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.released = asyncio.Event()  # hung requests answer once the proxy closes
        self.faults: list[Fault] = []
        self.hits: list[tuple[str, str, int]] = []
        self._client = httpx.AsyncClient(base_url=upstream, timeout=30)

    def inject(
        self,
        method: str,
        path: str,
        *,
        status: int = 503,
        headers: dict[str, str] | None = None,
        times: int = 1,
        hang: bool = False,
    ) -> Fault:
        fault = Fault(method, path, status=status, headers=headers or {}, times=times, hang=hang)
        self.faults.append(fault)
        return fault

    def app(self) -> Starlette:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=methods)])

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.hits if m == method and re.fullmatch(path, p))

    def _match(self, method: str, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.times > 0 and fault.method == method and re.fullmatch(fault.path, path):
                fault.times -= 1
                return fault
        return None

    async def _handle(self, request: Request) -> Response:
        method, path = request.method, request.url.path
        fault = self._match(method, path)
        if fault is not None:
            self.hits.append((method, path, 0 if fault.hang else fault.status))
            if fault.hang:
                await self.released.wait()
            body = {"error": "Injected", "code": "INJECTED_FAULT", "message": f"injected {fault.status}"}
            return JSONResponse(body, status_code=fault.status, headers=fault.headers)
        upstream = await self._client.request(
            method,
            request.url.path,
            params=request.query_params.multi_items(),
            content=await request.body(),
            headers={k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
        )
        self.hits.append((method, path, upstream.status_code))
        excluded = ("content-length", "transfer-encoding", "content-encoding")
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in excluded}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    async def aclose(self) -> None:
        await self._client.aclose()


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str) -> AsyncIterator[tuple[FaultProxy, str]]:
    """A proxy in front of `upstream`, served on a random 127.0.0.1 port: yields (proxy, its URL)."""
    proxy = FaultProxy(upstream)
    try:
        async with serve_app(proxy.app()) as url:
            try:
                yield proxy, url
            finally:
                proxy.released.set()
    finally:
        await proxy.aclose()
