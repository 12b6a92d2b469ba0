"""How the engine calls the room server: retry policy, write rate limit, error mapping, path encoding."""

from __future__ import annotations

import asyncio
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from roomoperator.clients.errors import (
    Conflict,
    Forbidden,
    Rejected,
    RoomServerError,
    Transient,
    Unauthorized,
    Unreachable,
    error_from_answer,
    parse_retry_after,
)
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.ratelimit import RateLimiter
from roomoperator.engine.retrying import Retrier, RetryFailed, backoff_delay
from roomoperator.settings import RetrySettings
from tests.support.servers import serve_app


@given(
    retry=st.integers(min_value=1, max_value=30),
    initial=st.integers(min_value=0, max_value=1000),
    cap=st.integers(min_value=0, max_value=10_000),
    jitter=st.floats(min_value=0, max_value=1),
    uniform=st.floats(min_value=0, max_value=0.999),
)
def test_backoff_is_capped_exponential_with_bounded_jitter(
    retry: int, initial: int, cap: int, jitter: float, uniform: float
) -> None:
    settings = RetrySettings(initial_delay_ms=initial, max_delay_ms=cap, jitter_factor=jitter)
    base = min(initial * 2 ** (retry - 1), cap) / 1000
    delay = backoff_delay(retry, settings, uniform=uniform)
    assert base <= delay <= base * (1 + jitter) + 1e-9
    assert backoff_delay(retry, settings, uniform=0) <= backoff_delay(retry + 1, settings, uniform=0)


class Script:
    """A call that fails with the given errors, then answers "ok"."""

    def __init__(self, *errors: RoomServerError) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def retrier(sleeps: list[float], **settings: float) -> Retrier:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    values = {"initial_delay_ms": 100, "max_delay_ms": 1000, "jitter_factor": 0.0, **settings}
    return Retrier(RetrySettings(**values), sleep=sleep, uniform=lambda: 0.5)  # type: ignore[arg-type]


async def test_transient_errors_are_retried_with_backoff_and_retry_after() -> None:
    sleeps: list[float] = []
    script = Script(Transient(503, "X", "busy"), Transient(429, "X", "slow down", retry_after=2.5))
    result = await retrier(sleeps).call(script)
    assert (result.value, result.attempts, script.calls) == ("ok", 3, 3)
    assert sleeps == [0.1, 2.5]


@pytest.mark.parametrize(
    "error",
    [
        Rejected(400, "BAD", "bad"),
        Unauthorized(401, "AUTH_REQUIRED", "no"),
        Forbidden(403, "INSUFFICIENT_SCOPE", "no"),
        Conflict(409, "X", "x"),
        Rejected(422, "X", "x"),
    ],
)
async def test_permanent_errors_are_not_retried(error: RoomServerError) -> None:
    sleeps: list[float] = []
    with pytest.raises(RetryFailed) as failed:
        await retrier(sleeps).call(Script(error))
    assert (failed.value.error, failed.value.attempts, sleeps) == (error, 1, [])


async def test_attempts_and_total_time_are_capped() -> None:
    sleeps: list[float] = []
    errors = [Unreachable(None, "ROOM_SERVER_UNREACHABLE", "down") for _ in range(10)]
    with pytest.raises(RetryFailed) as failed:
        await retrier(sleeps).call(Script(*errors))
    assert failed.value.attempts == 4
    assert sleeps == [0.1, 0.2, 0.4]
    long_wait = [Transient(429, "X", "later", retry_after=60) for _ in range(3)]
    with pytest.raises(RetryFailed) as capped:
        await retrier([], max_total_seconds=30).call(Script(*long_wait))
    assert capped.value.attempts == 1  # waiting 60 s would pass the 30 s budget


def test_error_mapping() -> None:
    def answer(status: int, *, body: object = b"", retry_after: str | None = None) -> RoomServerError:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return error_from_answer(status, reason=None, body=raw, retry_after=retry_after)

    forbidden = answer(403, body={"error": "Forbidden", "code": "INSUFFICIENT_SCOPE", "message": "lacks x"})
    assert isinstance(forbidden, Forbidden)
    assert (forbidden.code, forbidden.message, forbidden.transient) == (
        "INSUFFICIENT_SCOPE",
        "lacks x",
        False,
    )
    limited = answer(429, retry_after="7")
    assert (limited.transient, limited.retry_after) == (True, 7.0)
    assert answer(502).transient
    assert isinstance(answer(400, body=b"not json"), Rejected)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now=1445412480.0) == 10.0
    assert parse_retry_after("soon") is None


async def test_rate_limiter_allows_a_burst_then_waits() -> None:
    limiter = RateLimiter(20, burst=3)
    for _ in range(3):
        await asyncio.wait_for(limiter.acquire(), timeout=5)
    fourth = asyncio.ensure_future(limiter.acquire())
    for _ in range(3):
        await asyncio.sleep(0)
    assert not fourth.done()
    await asyncio.wait_for(fourth, timeout=5)
    with pytest.raises(ValueError, match="positive"):
        RateLimiter(0)


async def test_client_encodes_path_parts_and_counts_requests() -> None:
    seen: list[str] = []

    async def absent(request: Request) -> JSONResponse:
        seen.append(request.scope["raw_path"].decode())
        return JSONResponse({"error": "NotFound", "code": "ENTITY_NOT_FOUND", "message": "absent"}, 404)

    server = Starlette(routes=[Route("/{path:path}", absent, methods=["DELETE"])])
    async with serve_app(server) as url, RoomServerClient(url) as client:
        assert await client.kick("room 1", "E-a/b?c") is False  # 404 on a kick is success: already gone
        assert await client.delete_artifact("room-test-1", "notes#1.md") is False
        assert client.requests == 2
    assert seen == ["/room/room%201/entities/E-a%2Fb%3Fc", "/rooms/room-test-1/artifacts/notes%231.md"]
