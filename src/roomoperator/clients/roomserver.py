"""REST client of the room server (`docs/contract.md`): the state read, the writes, MCP, identity.

Every path part is URL-encoded, every failure is one of `clients.errors`, and `requests` counts the HTTP
requests made (benchmarks and the "a converged room costs one request" check read it). Idempotent
outcomes of the contract are answers, not errors: a kick or delete of an absent entity or artifact (404)
returns False. Entities are declared with the upsert PUT, not `POST /room/{roomId}/join`, whose answer
is the whole roster (O(n) per join, O(n²) to fill a room). Seed bytes are streamed from the file, never
loaded whole.

The state read is the one request every managed room makes every interval, so it takes the cheapest
path: an aiohttp session (about a tenth of httpx's CPU per request) and a conditional GET. The client
keeps each room's last state body (a few KiB, not the parsed objects, about six times larger) with its
`ETag` and sends `If-None-Match`; on a `304` it parses the kept body. The `ETag` comes back in
`ObservedRoom.etag`, so callers can tell an unchanged room without comparing states. Every other call
(writes, streams, identity, health) goes through httpx. `observer(status, seconds)` hears of every
request (status None: no answer), for metrics.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self
from urllib.parse import quote

import aiohttp
import httpx
from pydantic import ValidationError

from roomoperator.clients.errors import (
    NotFound,
    RoomServerError,
    error_from_answer,
    error_from_response,
    error_from_transport,
    unreachable,
)
from roomoperator.model.observed import Identity, ObservedPolicies, ObservedRoom

JsonBody = dict[str, Any]
RequestObserver = Callable[[int | None, float], None]


class _Answer(NamedTuple):
    status: int
    reason: str | None
    headers: Mapping[str, str]
    body: bytes


def _part(value: str) -> str:
    return quote(value, safe="")


class RoomServerClient:
    """An `httpx.AsyncClient` speaking the room server's operator contract."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        observer: RequestObserver | None = None,
    ) -> None:
        """`transport` replaces httpx's (tests); it does not carry the state read."""
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.base_url = base_url.rstrip("/")
        self.requests = 0
        self._identity: Identity | None = None
        self._observer = observer
        self._timeout = timeout
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=self._headers, timeout=timeout, transport=transport
        )
        self._session: aiohttp.ClientSession | None = None  # made on first use, inside the event loop
        self._states: dict[str, tuple[str, bytes]] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._session is not None:
            await self._session.close()

    def _observe(self, status: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer(status, time.perf_counter() - started)

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        self.requests += 1
        started = time.perf_counter()
        try:
            response = await self._http.send(request, stream=stream)
        except httpx.TransportError as exc:
            self._observe(None, started)
            raise error_from_transport(exc, self.base_url) from exc
        except httpx.RequestError as exc:  # undecodable body, too many redirects
            self._observe(None, started)
            raise RoomServerError(None, "INVALID_RESPONSE", f"{request.url.path}: {exc}") from exc
        self._observe(response.status_code, started)
        if response.is_success:
            return response
        await response.aread()
        raise error_from_response(response)

    async def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._send(self._http.build_request(method, path, **kwargs))

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self._call(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise RoomServerError(response.status_code, "INVALID_RESPONSE", f"{path}: not JSON") from exc

    # ---- reads ---------------------------------------------------------------------------------------

    async def get_state(self, room_id: str) -> ObservedRoom:
        """The room's declared entities, live artifacts, policies and resources, with the answer's `ETag`
        (a 304 answers the kept body). 404 means a server without the operator endpoints (the reference
        .NET server): see `NotFound`."""
        cached = self._states.get(room_id)
        headers = {"If-None-Match": cached[0]} if cached is not None else {}
        answer = await self._get(f"/room/{_part(room_id)}/state", headers)
        etag: str | None
        if answer.status == 304 and cached is not None:
            etag, body = cached
        elif 200 <= answer.status < 300:
            etag, body = answer.headers.get("ETag"), answer.body
        else:
            self._states.pop(room_id, None)
            raise error_from_answer(
                answer.status,
                reason=answer.reason,
                body=answer.body,
                retry_after=answer.headers.get("Retry-After"),
            )
        try:
            observed = ObservedRoom.model_validate_json(body)
        except ValidationError as exc:
            self._states.pop(room_id, None)
            raise RoomServerError(200, "INVALID_RESPONSE", f"room state of {room_id}: {exc}") from exc
        if etag is None:
            self._states.pop(room_id, None)
        else:
            self._states[room_id] = (etag, body)
        return observed.model_copy(update={"etag": etag})  # from the header only, never from the body

    async def _get(self, path: str, headers: dict[str, str]) -> _Answer:
        """One GET on the aiohttp session."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=self._timeout, sock_read=self._timeout),
            )
        self.requests += 1
        started = time.perf_counter()
        try:
            try:
                answer = await self._fetch(self._session, path, headers)
            except aiohttp.ServerDisconnectedError:
                # A keep-alive connection the server closed meanwhile: a GET is safe to send again.
                answer = await self._fetch(self._session, path, headers)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self._observe(None, started)
            detail = str(exc) or type(exc).__name__
            raise unreachable(self.base_url, detail, timed_out=isinstance(exc, TimeoutError)) from exc
        self._observe(answer.status, started)
        return answer

    async def _fetch(self, session: aiohttp.ClientSession, path: str, headers: dict[str, str]) -> _Answer:
        async with session.get(self.base_url + path, headers=headers) as response:
            return _Answer(response.status, response.reason, response.headers, await response.read())

    async def whoami(self) -> Identity:
        """The token's name and scopes (cached: a token's scopes do not change during a client's life)."""
        if self._identity is None:
            self._identity = Identity.model_validate(await self._json("GET", "/auth/whoami"))
        return self._identity

    async def health(self) -> bool:
        try:
            await self._call("GET", "/health")
        except RoomServerError:
            return False
        return True

    async def mcp_status(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", "/admin/mcp/status")
        return result

    async def download_artifact(self, room_id: str, name: str, *, version: int, target: Path) -> None:
        """Stream version `version` of a room artifact into `target` (used to restore it on rollback)."""
        request = self._http.build_request(
            "GET", f"/rooms/{_part(room_id)}/artifacts/{_part(name)}", params={"version": version}
        )
        response = await self._send(request, stream=True)
        try:
            with target.open("wb") as sink:
                async for chunk in response.aiter_bytes():
                    sink.write(chunk)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, self.base_url) from exc
        finally:
            await response.aclose()

    # ---- writes --------------------------------------------------------------------------------------

    async def put_entity(self, room_id: str, entity_id: str, entity: JsonBody) -> bool:
        """Declare or update an entity (`PUT /room/{roomId}/entities/{entityId}`, an upsert answering only
        that entity); True when this call declared it (201)."""
        response = await self._call("PUT", f"/room/{_part(room_id)}/entities/{_part(entity_id)}", json=entity)
        return response.status_code == 201

    async def kick(self, room_id: str, entity_id: str) -> bool:
        """Remove an entity; False when it was not declared (404 is success for the operator)."""
        try:
            await self._call("DELETE", f"/room/{_part(room_id)}/entities/{_part(entity_id)}")
        except NotFound:
            return False
        return True

    async def seed_artifact(
        self,
        room_id: str,
        *,
        name: str,
        type_: str,
        workspace: str,
        tags: Sequence[str],
        fingerprint: str | None,
        source: Path,
    ) -> JsonBody:
        """Upload `source` as the next version of a room artifact (streamed); returns its manifest."""
        spec = {
            "name": name,
            "type": type_,
            "workspace": workspace,
            "tags": list(tags),
            "fingerprint": fingerprint,
        }
        with source.open("rb") as data:
            body = await self._json(
                "POST",
                f"/rooms/{_part(room_id)}/artifacts",
                data={"spec": json.dumps(spec)},
                files={"data": (name, data, "application/octet-stream")},
            )
        manifest: JsonBody = body.get("manifest", body) if isinstance(body, dict) else {}
        return manifest

    async def promote_artifact(self, room_id: str, name: str) -> None:
        await self._call("POST", f"/rooms/{_part(room_id)}/artifacts/promote", json={"name": name})

    async def delete_artifact(self, room_id: str, name: str) -> bool:
        """Delete a room artifact (its versions are kept); False when it was absent."""
        try:
            await self._call("DELETE", f"/rooms/{_part(room_id)}/artifacts/{_part(name)}")
        except NotFound:
            return False
        return True

    async def put_policies(self, room_id: str, values: JsonBody) -> ObservedPolicies:
        """Set the given policy values (camelCase keys); returns the room's full policies."""
        body = await self._json("PUT", f"/rooms/{_part(room_id)}/policies", json=values)
        return ObservedPolicies.model_validate(body)

    async def mcp_load(self, providers: list[dict[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("POST", "/admin/mcp/load", json={"providers": providers})
        return result
