"""REST client of the room server (`docs/contract.md`): the state read, the writes, MCP, identity, events.

Every call goes through one funnel, `_exchange`, on one aiohttp session (made on first use, inside the
running event loop; closed by `aclose`). The funnel counts the request in `requests` (benchmarks and the
"a converged room costs one request" check read it), tells `observer(status, seconds)` of it (status None:
no answer), for metrics, and maps every failure through `clients.errors`. Its only input from outside is
the base URL, so a test that points the client at a fault-injecting proxy reaches every call, the state
read included. aiohttp was chosen by measurement (`docs/operator.md`, "HTTP client"): about a quarter of
httpx's CPU per request.

Every path part is URL-encoded. Idempotent outcomes of the contract are answers, not errors: a kick or
delete of an absent entity or artifact (404) returns False. Entities are declared with the upsert PUT, not
`POST /room/{roomId}/join`, whose answer is the whole roster (O(n) per join, O(n²) to fill a room). Seed
bytes are streamed from the file and downloads into one, never held whole.

The state read is the one request every managed room makes every interval, so it is a conditional GET:
the client keeps each room's last state body (a few KiB, not the parsed objects, about six times larger)
with its `ETag` and sends `If-None-Match`; on a `304` it parses the kept body, unless the parsed state of
that `ETag` is still among the last ones read (`PARSED_STATES_BYTES` of bodies: a room of 1,000 entities
and 1,000 artifacts costs ~10 ms to parse). The `ETag` comes back in
`ObservedRoom.etag`, so callers can tell an unchanged room without comparing states. aiohttp sends an
idempotent request (GET, PUT, DELETE) once more when the server had closed the kept-alive connection.

With operator replicas (`docs/operator.md`, "Running replicas") the client is given `fences`, the room id ->
lease epoch lookup of its replica: the funnel then adds `X-RoomOp-Fence: <epoch>` to every write to a room
(`roomcontract/fencing.py`), refuses locally a write to a room the replica does not hold, and tells
`fences` of a write the room server refused as `FENCED` (`clients.errors.Fenced`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

import aiohttp
from cachetools import LRUCache
from pydantic import ValidationError

from roomcontract.actors import WITH_ACTOR
from roomcontract.batch import BATCH_FEATURE
from roomcontract.entities import Membership
from roomcontract.fencing import FENCE_HEADER
from roomoperator.clients.errors import (
    FENCED_CODE,
    Fenced,
    NotFound,
    Rejected,
    RoomServerError,
    error_from_answer,
    error_from_failure,
)
from roomoperator.clients.http import SessionClient, SseEvent, read_events
from roomoperator.clients.writing import (
    BODYLESS,
    REMOVALS,
    JsonBody,
    WriteResult,
    chunks,
    item_result,
    json_or_none,
    manager_body,
    path_part,
    single_body,
    single_route,
)
from roomoperator.model.observed import Identity, ObservedManager, ObservedPolicies, ObservedRoom
from roomoperator.model.writes import Write

RequestObserver = Callable[[int | None, float], None]

_CHUNK = 64 * 1024
_UPLOAD_CHUNK = 1024 * 1024

PARSED_STATES_BYTES = 4 * 1024 * 1024
"""The parsed states kept besides the bodies, counted by their bodies' size (LRU; parsed objects take
about six times their body): a big room's unchanged state is then not parsed again on every read."""


class ChunkDigest(Protocol):
    """A digest fed the bytes of an upload as they are sent (the reference fingerprint)."""

    def update(self, chunk: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


def _read_small(source: Path, tap: ChunkDigest | None) -> bytes | None:
    """The whole of `source` when it fits in one upload chunk (given to `tap`), else None: a small seed is
    sent as one body of known length (one write, no chunked encoding, one thread hop)."""
    with source.open("rb") as stream:
        if os.fstat(stream.fileno()).st_size > _UPLOAD_CHUNK:
            return None
        content = stream.read()
    if tap is not None and content:
        tap.update(content)
    return content


def _read_tapped(stream: BinaryIO, tap: ChunkDigest | None) -> bytes:
    """The next chunk of an upload, given to `tap` first (both on a worker thread)."""
    chunk = stream.read(_UPLOAD_CHUNK)
    if tap is not None and chunk:
        tap.update(chunk)
    return chunk


class Fences(Protocol):
    """The lease epochs of this replica's rooms (`store/leases.Fencing` is one)."""

    def epoch(self, room_id: str) -> int | None:
        """The epoch this replica holds `room_id` with; None when it does not hold the room."""

    def fenced(self, room_id: str, reason: str) -> None:
        """A write to `room_id` was refused by fencing: the replica lost the room."""


class _Answer(NamedTuple):
    status: int
    headers: Mapping[str, str]
    body: bytes


class RoomServerClient(SessionClient):
    """The room server's operator contract over one aiohttp session."""

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 10.0,
        observer: RequestObserver | None = None,
        fences: Fences | None = None,
    ) -> None:
        """`timeout` bounds connecting and each wait for bytes (`RoomServerSettings.timeout_seconds`);
        `fences` (replica mode) gives the epoch every write to a room carries."""
        super().__init__(timeout=timeout, headers={"Authorization": f"Bearer {token}"} if token else None)
        self.base_url = base_url.rstrip("/")
        self.requests = 0
        self._identity: Identity | None = None
        self._features: frozenset[str] | None = None
        self._observer = observer
        self.fences = fences
        self._states: dict[str, tuple[str, bytes]] = {}
        self._parsed: LRUCache[str, ObservedRoom] = LRUCache(
            maxsize=PARSED_STATES_BYTES, getsizeof=lambda state: self._body_size(state.room_id)
        )

    def _body_size(self, room_id: str) -> int:
        kept = self._states.get(room_id)
        return max(1, len(kept[1])) if kept is not None else 1

    def _fence(self, room: str, options: dict[str, Any]) -> None:
        """Add the fence header of `room` to a write's `options` (replica mode); `Fenced` when this replica
        does not hold the room."""
        if self.fences is None:
            return
        epoch = self.fences.epoch(room)
        if epoch is None:
            raise Fenced(None, FENCED_CODE, f"this operator replica does not own room {room} (no lease)")
        options["headers"] = {**options.get("headers", {}), FENCE_HEADER: str(epoch)}

    @contextlib.asynccontextmanager
    async def _exchange(
        self, method: str, path: str, *, room: str | None = None, **options: Any
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """The one funnel: the open answer to `method path` (2xx or 304), or one of `clients.errors`, also
        for a failure while the caller reads the body. `room`: the call writes to that room (it carries
        the room's fence in replica mode)."""
        if room is not None:
            self._fence(room, options)
        self.requests += 1
        started, status = time.perf_counter(), None
        try:
            async with self._open().request(method, self.base_url + path, **options) as response:
                status = response.status
                if not (200 <= status < 300 or status == 304):
                    raise error_from_answer(
                        status,
                        reason=response.reason,
                        body=await response.read(),
                        retry_after=response.headers.get("Retry-After"),
                    )
                yield response
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise error_from_failure(exc, base_url=self.base_url, what=f"{method} {path}") from exc
        except Fenced as exc:
            if room is not None and self.fences is not None:
                self.fences.fenced(room, exc.message)
            raise
        finally:
            if self._observer is not None:
                self._observer(status, time.perf_counter() - started)

    async def _call(self, method: str, path: str, **options: Any) -> _Answer:
        async with self._exchange(method, path, **options) as response:
            return _Answer(response.status, response.headers, await response.read())

    async def _json(self, method: str, path: str, **options: Any) -> Any:
        answer = await self._call(method, path, **options)
        try:
            return json.loads(answer.body)
        except ValueError as exc:
            raise RoomServerError(answer.status, "INVALID_RESPONSE", f"{path}: not JSON") from exc

    # ---- reads ---------------------------------------------------------------------------------------

    async def get_state(self, room_id: str) -> ObservedRoom:
        """The room's declared entities, live artifacts, policies and resources, with the answer's `ETag`
        (a 304 answers the kept body). 404 means a server without the operator endpoints (the reference
        .NET server): see `NotFound`; unless the URL is a RoomOperator's own API (`NOT_A_ROOM_SERVER`)."""
        cached = self._states.pop(room_id, None)  # kept again below once the answer proves good
        headers = {"If-None-Match": cached[0]} if cached is not None else {}
        try:
            answer = await self._call("GET", f"/room/{path_part(room_id)}/state", headers=headers)
        except NotFound:
            await self._refuse_operator_api()
            raise
        etag: str | None
        if answer.status == 304 and cached is not None:
            etag, body = cached
            parsed = self._parsed.get(room_id)
            if parsed is not None and parsed.etag == etag:
                self._states[room_id] = cached
                return parsed
        else:
            etag, body = answer.headers.get("ETag"), answer.body
        try:
            observed = ObservedRoom.model_validate_json(body)
        except ValidationError as exc:
            raise RoomServerError(
                answer.status, "INVALID_RESPONSE", f"room state of {room_id}: {exc}"
            ) from exc
        observed = observed.model_copy(update={"etag": etag})  # from the header only, never from the body
        if etag is not None:
            self._states[room_id] = (etag, body)
            if len(body) <= PARSED_STATES_BYTES:
                self._parsed[room_id] = observed
        return observed

    def state_tag(self, room_id: str) -> str | None:
        """The `ETag` of the room's state as last read (None: not read, or no `ETag`)."""
        kept = self._states.get(room_id)
        return kept[0] if kept is not None else None

    async def unchanged(self, room_id: str, etag: str) -> bool:
        """Whether the room's state is still the one tagged `etag` (one conditional read, answered `304`
        without a body); a changed state's answer is kept, so the next `get_state` costs a `304`."""
        answer = await self._call("GET", f"/room/{path_part(room_id)}/state", headers={"If-None-Match": etag})
        if answer.status == 304:
            return True
        if (tag := answer.headers.get("ETag")) is not None:
            self._states[room_id] = (tag, answer.body)
        return False

    async def _refuse_operator_api(self) -> None:
        """Raise `NOT_A_ROOM_SERVER` when the base URL answers `/health` with the operator's JSON shape
        (`status`, `checks`) instead of a room server's `Healthy`: the operator's URL given as a room
        server's, which would otherwise pass for a reference server. Any other answer returns. Read
        past the funnel, as an unhealthy operator answers 503 with the same shape."""
        self.requests += 1
        try:
            async with self._open().get(self.base_url + "/health") as response:
                health = json.loads(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return
        if isinstance(health, dict) and {"status", "checks"} <= health.keys():
            raise Rejected(
                404,
                "NOT_A_ROOM_SERVER",
                f"{self.base_url} is a RoomOperator's API, not a room server: to go through that operator"
                f" pass --operator {self.base_url}; to write to the room server directly give its URL"
                " (`roomop up` starts it on http://127.0.0.1:5000) with --server",
            )

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
        path = f"/rooms/{path_part(room_id)}/artifacts/{path_part(name)}"
        async with self._exchange("GET", path, params={"version": version}) as response:
            with target.open("wb") as sink:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    sink.write(chunk)

    async def events(
        self, *, last_event_id: str | None = None, with_actor: bool = False, room_id: str | None = None
    ) -> AsyncIterator[SseEvent]:
        """`GET /events`: every room event after `last_event_id` (all new ones when None) as it happens,
        first a `connected` event; ends when the server closes the stream. `with_actor` asks a server with
        `events.actor.v1` to name each event's actor (`roomcontract.actors`); `room_id` asks for that
        room's events only (a server may send others: the reference ignores the filter)."""
        headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
        params = {WITH_ACTOR: "1"} if with_actor else {}
        if room_id is not None:
            params["roomId"] = room_id
        async with self._exchange(
            "GET", "/events", headers=headers, params=params, timeout=self._stream_timeout
        ) as answer:
            async for event in read_events(answer):
                yield event

    # ---- writes --------------------------------------------------------------------------------------

    async def write(self, room_id: str, write: Write) -> WriteResult:
        """Make one write through its single endpoint. A removal of something absent (404) is a result
        (done, `absent`); every other failure raises, as every call of the funnel does."""
        method, path = single_route(room_id, write)
        body = None if write.op in BODYLESS else {"json": single_body(write)}
        try:
            answer = await self._call(method, path, room=room_id, **(body or {}))
        except NotFound:
            if write.op in REMOVALS:
                return WriteResult(404)
            raise
        return WriteResult(answer.status, json_or_none(answer.body))

    async def batch(self, room_id: str, writes: Sequence[Write]) -> list[WriteResult]:
        """Make `writes` in order through `POST /room/{roomId}/batch` (a server with `batch.v1`): one request
        per `MAX_BATCH_ITEMS` items (or per about 3 MiB of body), each applied in one transaction. Each
        write's result is mapped as its single call's answer would be (`WriteResult.error`); a failure of
        the whole request raises."""
        results: list[WriteResult] = []
        for chunk in chunks(writes):
            document = await self._json(
                "POST",
                f"/room/{path_part(room_id)}/batch",
                room=room_id,
                json={"items": [w.to_item() for w in chunk]},
            )
            answers = document.get("results") if isinstance(document, dict) else None
            if not isinstance(answers, list) or len(answers) != len(chunk):
                raise RoomServerError(
                    200, "INVALID_RESPONSE", f"batch of {room_id}: one result per item expected"
                )
            results.extend(item_result(write, answer) for write, answer in zip(chunk, answers, strict=True))
        return results

    async def features(self) -> frozenset[str]:
        """What the server offers beyond the reference contract (`GET /auth/whoami`'s `features`; none
        when it has no whoami); cached like the identity."""
        if self._features is None:
            try:
                self._features = (await self.whoami()).features
            except NotFound:
                self._features = frozenset()
        return self._features

    async def batching(self) -> bool:
        """True when the server has the batch endpoint (`batch.v1`)."""
        return BATCH_FEATURE in await self.features()

    async def put_entity(self, room_id: str, entity_id: str, entity: JsonBody) -> bool:
        """Declare or update an entity (`PUT /room/{roomId}/entities/{entityId}`, an upsert answering only
        that entity); True when this call declared it (201)."""
        return (await self.write(room_id, Write.put_entity({**entity, "entityId": entity_id}))).created

    async def kick(self, room_id: str, entity_id: str) -> bool:
        """Remove an entity; False when it was not declared (404 is success for the operator)."""
        return not (await self.write(room_id, Write.remove_entity(entity_id))).absent

    async def seed_artifact(
        self,
        room_id: str,
        *,
        name: str,
        type_: str,
        workspace: str,
        tags: Sequence[str],
        fingerprint: str | ChunkDigest | None,
        source: Path,
    ) -> JsonBody:
        """Upload `source` as the next version of a room artifact (streamed, read on a worker thread; one of
        at most a chunk is read at once and sent as one body of known length); returns its manifest. A
        `ChunkDigest` fingerprint is fed every byte as it is sent, and the `spec` part, sent after the
        `data` part (the form's parts may come in any order), carries its digest."""
        spec = {"name": name, "type": type_, "workspace": workspace, "tags": list(tags)}
        tap = None if fingerprint is None or isinstance(fingerprint, str) else fingerprint

        small = await asyncio.to_thread(_read_small, source, tap)

        async def data() -> AsyncIterator[bytes]:
            with source.open("rb") as stream:
                while chunk := await asyncio.to_thread(_read_tapped, stream, tap):
                    yield chunk

        def spec_bytes() -> bytes:
            recorded = fingerprint if tap is None else tap.hexdigest()
            return json.dumps({**spec, "fingerprint": recorded}).encode()

        async def spec_part() -> AsyncIterator[bytes]:
            yield spec_bytes()

        form = aiohttp.MultipartWriter("form-data")
        content = form.append(
            data() if small is None else small, {"Content-Type": "application/octet-stream"}
        )
        content.set_content_disposition("form-data", name="data", filename=name)
        form.append(
            spec_part() if small is None else spec_bytes(), {"Content-Type": "application/json"}
        ).set_content_disposition("form-data", name="spec")
        options: dict[str, Any] = (
            {"data": form}  # streamed
            if small is None
            else {"data": await form.as_bytes(), "headers": {"Content-Type": form.content_type}}
        )
        body = await self._json("POST", f"/rooms/{path_part(room_id)}/artifacts", room=room_id, **options)
        manifest: JsonBody = body.get("manifest", body) if isinstance(body, dict) else {}
        return manifest

    async def promote_artifact(self, room_id: str, name: str) -> None:
        await self.write(room_id, Write.promote_artifact(name))

    async def delete_artifact(self, room_id: str, name: str) -> bool:
        """Delete a room artifact (its versions are kept); False when it was absent."""
        return not (await self.write(room_id, Write.delete_artifact(name))).absent

    async def put_policies(self, room_id: str, values: JsonBody) -> ObservedPolicies:
        """Set the given policy values (camelCase keys); returns the room's full policies."""
        return ObservedPolicies.model_validate((await self.write(room_id, Write.put_policies(values))).body)

    async def put_manager(
        self, room_id: str, *, name: str, url: str | None, membership: Membership = "closed"
    ) -> ObservedManager:
        """Record this operator as the room's manager and who may join it (`PUT /rooms/{roomId}/manager`,
        idempotent)."""
        write = Write.put_manager(manager_body(name=name, url=url, membership=membership))
        return ObservedManager.model_validate((await self.write(room_id, write)).body)

    async def mcp_load(
        self, providers: list[dict[str, Any]], *, room_id: str | None = None
    ) -> dict[str, Any]:
        """`POST /admin/mcp/load`; with `room_id` the providers serve that room only (an extension)."""
        body: dict[str, Any] = {"providers": providers}
        if room_id is not None:
            body["roomId"] = room_id
        result: dict[str, Any] = await self._json("POST", "/admin/mcp/load", room=room_id, json=body)
        return result
