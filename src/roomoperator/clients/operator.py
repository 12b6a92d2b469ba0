"""Client of the operator's own HTTP API, for `roomop status`, `roomop audit` and `roomop plan/apply
--operator`.

It reads a JSON document (`/status`, `/audit`, `/runs/{id}`), follows `/events` as parsed Server-Sent
Events, and sends a spec with its seed files as one multipart `POST /apply` (then follows the run), on
the same HTTP library as the room-server client. Every failure is an `OperatorError` whose message says
what was tried, what failed and what to do about it, ready to print.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from roomoperator.clients.http import SessionClient, read_events


class OperatorError(Exception):
    """A call to the operator's API failed; the message is for a person."""


FINISHED = frozenset({"succeeded", "failed", "superseded"})
"""The statuses of `GET /runs/{id}` after which a run changes no more."""


@dataclass(frozen=True)
class ApplyAnswer:
    """The operator's answer to `POST /apply`: 200 (the run finished), 202 (queued: follow the run) or a
    refusal (400, 409, 413, 415), with its JSON body."""

    status: int
    body: dict[str, Any]

    @property
    def correlation_id(self) -> str | None:
        found = self.body.get("correlationId")
        return found if isinstance(found, str) else None


@dataclass(frozen=True)
class OperatorEvent:
    """One event of the operator's `/events`: its name (`connected`, or an audit entry's type), its id,
    and its JSON data (an audit entry has an `action`)."""

    kind: str
    id: str | None
    data: Any


class OperatorClient(SessionClient):
    """The operator at `base_url`; `token` (the operator API's) is sent with every request (with auth on,
    reads need one too)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = 10.0) -> None:
        super().__init__(timeout=timeout, headers={"Authorization": f"Bearer {token}"} if token else None)
        self.base_url = base_url.rstrip("/")
        self._token = token

    async def post_apply(
        self,
        spec_text: str,
        seeds: Mapping[str, bytes],
        *,
        dry_run: bool,
        confirm: bool,
        force: bool = False,
        expect: str | None = None,
    ) -> ApplyAnswer:
        """`POST /apply` of the JSON `spec_text` with its seed files (a `seedFrom` path as the spec writes it
        -> the bytes), as one multipart form; `expect` is the digest of the plan the caller confirmed
        (`X-Expect-Plan`). A refusal is an answer too; a 401 or a failure is not."""
        form = aiohttp.FormData(quote_fields=False)  # names as written: `./seeds/plan.md`
        form.add_field("spec", spec_text, content_type="application/json", filename="spec.json")
        for name, data in seeds.items():
            form.add_field(name, data, content_type="application/octet-stream", filename=name.rsplit("/")[-1])
        headers = {"X-Dry-Run": str(dry_run).lower(), "X-Confirm": str(confirm).lower()}
        if force:
            headers["X-Force"] = "true"
        if expect is not None:
            headers["X-Expect-Plan"] = expect
        try:
            # A run may take longer than one read timeout: the operator answers when it finished.
            url = self.base_url + "/apply"
            async with self._open().post(
                url, data=form, headers=headers, timeout=self._stream_timeout
            ) as answer:
                body = await answer.read()
                if answer.status == 401:
                    raise self._unauthorized("POST", "/apply")
                if answer.status not in (200, 202, 400, 409, 413, 415):
                    raise self._refused("POST", "/apply", answer, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("POST", "/apply", exc) from None
        return ApplyAnswer(answer.status, self._decode("POST", "/apply", body))

    async def post_rollback(
        self, room_id: str, revision: int, *, dry_run: bool, confirm: bool
    ) -> ApplyAnswer:
        """`POST /rooms/{id}/rollback` of `revision` (`dry_run`: its plan only). A refusal is an answer too
        (400, 404); a 401 or a failure is not."""
        path = f"/rooms/{room_id}/rollback"
        headers = {"X-Dry-Run": str(dry_run).lower(), "X-Confirm": str(confirm).lower()}
        try:
            async with self._open().post(
                self.base_url + path,
                json={"revision": revision},
                headers=headers,
                timeout=self._stream_timeout,
            ) as answer:
                body = await answer.read()
                if answer.status == 401:
                    raise self._unauthorized("POST", path)
                if answer.status not in (200, 202, 400, 404):
                    raise self._refused("POST", path, answer, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("POST", path, exc) from None
        return ApplyAnswer(answer.status, self._decode("POST", path, body))

    async def follow_run(
        self,
        correlation_id: str,
        *,
        every: float = 0.2,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """`GET /runs/{id}` until the run is finished (succeeded, failed or superseded); its last answer.
        `on_status` sees each answer before that (to show that the run is queued or running)."""
        while True:
            run = await self.get_json(f"/runs/{correlation_id}")
            if not isinstance(run, dict):
                raise OperatorError(
                    f"the operator at {self.base_url} answered GET /runs/{correlation_id} oddly"
                )
            if run.get("status") in FINISHED:
                return run
            if on_status is not None:
                on_status(run)
            await asyncio.sleep(every)  # the run ledger has no change feed to wait on

    async def get_json(self, path: str, *, params: Mapping[str, str | int] | None = None) -> Any:
        """The JSON document at `path`; a 503 is an answer too (an unhealthy operator still reports)."""
        try:
            async with self._open().get(self.base_url + path, params=params) as answer:
                body = await answer.read()
                if answer.status == 401:
                    raise self._unauthorized("GET", path)
                if answer.status >= 400 and answer.status != 503:
                    raise self._refused("GET", path, answer, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("GET", path, exc) from None
        return self._decode("GET", path, body)

    def _decode(self, method: str, path: str, body: bytes) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise OperatorError(
                f"the operator at {self.base_url} answered {method} {path} with a body that is not JSON: "
                f"is {self.base_url} the operator's API (`roomop serve` listens on port 8080)?"
            ) from None

    async def events(self) -> AsyncIterator[OperatorEvent]:
        """`GET /events`: `connected`, the recent audit entries, then new ones as they happen (until the
        operator stops or the caller stops reading)."""
        try:
            async with self._open().get(self.base_url + "/events", timeout=self._stream_timeout) as answer:
                if answer.status == 401:
                    raise self._unauthorized("GET", "/events")
                if answer.status != 200:
                    raise self._refused("GET", "/events", answer, await answer.read())
                async for event in read_events(answer):
                    try:
                        data = json.loads(event.data)
                    except ValueError:
                        data = event.data
                    yield OperatorEvent(event.event, event.id, data)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._unreachable("GET", "/events", exc) from None

    def _refused(self, method: str, path: str, answer: aiohttp.ClientResponse, body: bytes) -> OperatorError:
        text = body.decode(errors="replace").strip()[:500]
        status = f"{answer.status} {answer.reason or ''}".strip()
        return OperatorError(
            f"the operator at {self.base_url} answered {method} {path} with {status}"
            + (f": {text}" if text else "")
        )

    def _unauthorized(self, method: str, path: str) -> OperatorError:
        given = "refused the token given" if self._token else "needs a token and none was given"
        return OperatorError(
            f"the operator at {self.base_url} {given} ({method} {path}: 401). Pass the operator API token "
            "with --token or ROOMOP_API_TOKEN: `roomop up` keeps it in <data>/credentials.json (default "
            ".roomop/credentials.json) as operator.apiToken; `roomop serve` uses api.token or "
            "api.tokens_file of its settings."
        )

    def _unreachable(self, method: str, path: str, exc: BaseException) -> OperatorError:
        detail = str(exc) or type(exc).__name__
        return OperatorError(
            f"cannot reach the operator at {self.base_url} ({method} {path}: {detail}). Start it with "
            "`roomop serve` or `roomop up`, or name the running one with --operator or ROOMOP_OPERATOR_URL."
        )
