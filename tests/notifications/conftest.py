"""A webhook receiver on 127.0.0.1 (Starlette on uvicorn, a real socket) that checks each delivery's
signature and timestamp, answers 500 to the first `fail_first` requests, can hold a request until told
to let it go, and lets a test await the n-th request (no sleeps)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.service.conftest import admin, roomserver
from tests.support.servers import serve_app

__all__ = ["admin", "roomserver"]

SECRET = "notify-secret"
WAIT_SECONDS = 20.0
T = TypeVar("T")


@dataclass
class Received:
    delivery: str
    kind: str
    body: dict[str, Any]
    signed: bool
    fresh: bool
    """The timestamp is within five minutes of now (a receiver's replay check)."""


@dataclass
class Receiver:
    url: str = ""
    fail_first: int = 0
    hold: asyncio.Event | None = None
    """While set-able and unset, the first request waits for it (an operator stopped mid-delivery)."""
    requests: list[Received] = field(default_factory=list)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def handle(self, request: Request) -> Response:
        raw = await request.body()
        stamp = request.headers.get("x-roomop-timestamp", "0")
        expected = (
            "sha256=" + hmac.new(SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
        )
        signed = hmac.compare_digest(request.headers.get("x-roomop-signature", ""), expected)
        received = Received(
            delivery=request.headers.get("x-roomop-delivery", ""),
            kind=request.headers.get("x-roomop-event", ""),
            body=json.loads(raw),
            signed=signed,
            fresh=abs(time.time() - int(stamp)) < 300,
        )
        async with self.changed:
            self.requests.append(received)
            self.changed.notify_all()
        if self.hold is not None and len(self.requests) == 1:
            await self.hold.wait()
        status = 500 if len(self.requests) <= self.fail_first else 200
        return Response(status_code=status)

    async def wait_for(self, count: int) -> list[Received]:
        async with asyncio.timeout(WAIT_SECONDS), self.changed:
            await self.changed.wait_for(lambda: len(self.requests) >= count)
            return list(self.requests)


@contextlib.asynccontextmanager
async def receiving(**fields: Any) -> AsyncIterator[Receiver]:
    receiver = Receiver(**fields)
    app = Starlette(routes=[Route("/hook", receiver.handle, methods=["POST"])])
    async with serve_app(app) as url:
        receiver.url = f"{url}/hook"
        yield receiver


async def eventually(check: Callable[[], Awaitable[T | None]], *, seconds: float = WAIT_SECONDS) -> T:
    """The first non-None answer of `check`, asked again until `seconds` pass (for state the store settles
    just after an event the test can await)."""
    async with asyncio.timeout(seconds):
        while (found := await check()) is None:  # noqa: ASYNC110  (the store settles after the answer)
            await asyncio.sleep(0.02)
        return found
