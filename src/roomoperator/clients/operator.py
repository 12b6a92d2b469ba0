"""Client of the operator's own HTTP API, for the `roomop status` and `roomop audit` commands.

It reads a JSON document (`/status`, `/audit`) and follows `/events` as parsed Server-Sent Events, on the
same HTTP library as the room-server client. Every failure is an `OperatorError` whose message says what
was tried, what failed and what to do about it, ready to print.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from roomoperator.clients.http import SessionClient, read_events


class OperatorError(Exception):
    """A call to the operator's API failed; the message is for a person."""


@dataclass(frozen=True)
class OperatorEvent:
    """One event of the operator's `/events`: its name (`connected`, or an audit entry's type), its id,
    and its JSON data (an audit entry has an `action`)."""

    kind: str
    id: str | None
    data: Any


class OperatorClient(SessionClient):
    """The operator at `base_url` (no token: these endpoints are open to readers)."""

    def __init__(self, base_url: str, *, timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url.rstrip("/")

    async def get_json(self, path: str, *, params: Mapping[str, str | int] | None = None) -> Any:
        """The JSON document at `path`; a 503 is an answer too (an unhealthy operator still reports)."""
        try:
            async with self._open().get(self.base_url + path, params=params) as answer:
                body = await answer.read()
                if answer.status >= 400 and answer.status != 503:
                    raise self._refused(path, answer, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("GET", path, exc) from None
        try:
            return json.loads(body)
        except ValueError:
            raise OperatorError(
                f"the operator at {self.base_url} answered GET {path} with a body that is not JSON: "
                f"is {self.base_url} the operator's API (`roomop serve` listens on port 8080)?"
            ) from None

    async def events(self) -> AsyncIterator[OperatorEvent]:
        """`GET /events`: `connected`, the recent audit entries, then new ones as they happen (until the
        operator stops or the caller stops reading)."""
        try:
            async with self._open().get(self.base_url + "/events", timeout=self._stream_timeout) as answer:
                if answer.status != 200:
                    raise self._refused("/events", answer, await answer.read())
                async for event in read_events(answer):
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        data = event.data
                    yield OperatorEvent(event.event, event.id, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("GET", "/events", exc) from None

    def _refused(self, path: str, answer: aiohttp.ClientResponse, body: bytes) -> OperatorError:
        text = body.decode(errors="replace").strip()[:500]
        status = f"{answer.status} {answer.reason or ''}".strip()
        return OperatorError(
            f"the operator at {self.base_url} answered GET {path} with {status}"
            + (f": {text}" if text else "")
        )

    def _unreachable(self, method: str, path: str, exc: BaseException) -> OperatorError:
        detail = str(exc) or type(exc).__name__
        return OperatorError(
            f"cannot reach the operator at {self.base_url} ({method} {path}: {detail}). Start it with "
            "`roomop serve` or `roomop up`, or name the running one with --operator or ROOMOP_OPERATOR_URL."
        )
