"""Per-item retry of room-server writes: exponential backoff with jitter, only for failures that can pass.

Retried: `RoomServerError.transient` (connection errors, timeouts, 429, 5xx); a 429/503 `Retry-After` is
honoured (waited in full). Never retried: 400, 401, 403, 404, 409, 422. `max_attempts` counts retries after
the first call (the reference's meaning), and the whole item gives up once the next wait would pass
`max_total_seconds`. Delays follow `model/backoff.py` (the integration guide's formula; the reference ran
Polly's decorrelated jitter instead).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_before_delay

from roomoperator.clients.errors import RoomServerError
from roomoperator.model.backoff import Backoff
from roomoperator.settings import RetrySettings

T = TypeVar("T")


def backoff_delay(retry: int, settings: RetrySettings, *, uniform: float) -> float:
    """Seconds to wait before retry number `retry` (1-based), with `uniform` drawn from [0, 1)."""
    backoff = Backoff(settings.initial_delay_ms / 1000, settings.max_delay_ms / 1000, settings.jitter_factor)
    return backoff.delay(retry, uniform=uniform)


def is_transient(exc: BaseException) -> bool:
    return isinstance(exc, RoomServerError) and exc.transient


@dataclass(frozen=True)
class Attempted(Generic[T]):
    """A value and the number of calls it took."""

    value: T
    attempts: int


class RetryFailed(Exception):
    """The last error of an item that did not succeed, and how many calls were made."""

    def __init__(self, error: BaseException, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.attempts = attempts


class Retrier:
    """Runs one item's call with the retry policy of `settings`."""

    def __init__(
        self,
        settings: RetrySettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        uniform: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self._sleep = sleep
        self._uniform = uniform

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        delay = backoff_delay(state.attempt_number, self.settings, uniform=self._uniform())
        retry_after = getattr(error, "retry_after", None)
        return max(delay, retry_after) if retry_after is not None else delay

    async def call(self, fn: Callable[[], Awaitable[T]]) -> Attempted[T]:
        """`fn()`, retried on transient failures; raises RetryFailed with the last error otherwise."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_attempts + 1)
            | stop_before_delay(self.settings.max_total_seconds),
            wait=self._wait,
            retry=retry_if_exception(is_transient),
            sleep=self._sleep,
            reraise=True,
        )
        attempts = 0
        try:
            async for attempt in retrying:
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    value = await fn()
        except Exception as exc:
            raise RetryFailed(exc, attempts) from exc
        return Attempted(value, attempts)
