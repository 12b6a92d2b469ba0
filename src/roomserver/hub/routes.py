"""The hub at `/room`: negotiate, the three transports' endpoints, each connection's life, and the event
log's delivery to room groups.

`Hub` composes the parts: negotiation ids (`negotiate.py`), open connections (`connections.py`) on their
transports (`transports.py`), the methods (`methods.py`) over the JSON protocol (`protocol.py`). Whatever
the transport, what a client sends goes through `receive` (handshake, then records) and every connection
lives the same life (`_live`): its invocations run one after another, and when it ends its session
leaves, then its close message goes out. Endpoints, as ASP.NET Core SignalR's:

- `POST /room/negotiate`; WebSocket `/room?id=<token>`;
- `GET /room?id=<token>`: a long poll, or with `Accept: text/event-stream` the SSE stream; the first GET
  claims the negotiated id and fixes the transport (another one later is 400, a second SSE stream 409);
- `POST /room?id=<token>`: what the client sends on those two (at most 32 KB, one send at a time);
- `DELETE /room?id=<token>`: a long-polling client's goodbye (202; its outstanding poll answers 204).

Authentication is the REST one: a bearer token with `room:read`, in the `Authorization` header or the
`access_token` query parameter (what browsers' SignalR clients send), on every request; an HTTP
transport's requests must come with the token that negotiated the connection (403 otherwise). The user
of the connection is the token's name (`X-User-Id` only in insecure dev mode).

Client events come from the durable event log: every event a room stores (a hub join or message, and
also a REST declaration or artifact write) is read back once by `_follow` and sent to the connections
holding a session in that room, so hub clients, `GET /events` and the log never disagree and a message
is delivered only after it is stored. Direct messages are the exception: they go only to the two
entities' connections and are not stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.datastructures import Headers, QueryParams
from starlette.websockets import WebSocket, WebSocketDisconnect

from roomcontract.scopes import READ
from roomserver.auth import Principal
from roomserver.domain import events as ev
from roomserver.domain.events import RoomEvent
from roomserver.errors import RoomServerError, bad_request
from roomserver.hub import protocol
from roomserver.hub.connections import Connection, Connections
from roomserver.hub.methods import Caller, HubMethods, dispatch
from roomserver.hub.negotiate import Negotiations, foreign_connection, unknown_connection
from roomserver.hub.transports import (
    HttpConnection,
    LongPollingConnection,
    SseConnection,
    SseResponse,
    WebSocketConnection,
)
from roomserver.server import RoomServer
from roomserver.storage import repository

log = logging.getLogger("roomserver.hub")

_BATCH: Final = 500
_SHUTDOWN_GRACE_SECONDS: Final = 5.0
_FAILED: Final = "Connection closed with an error. "
"""The close reason's prefix when the client broke the protocol (as ASP.NET Core words it)."""


class Hub:
    """The live room: one per app (`app.state.hub`); `router` serves it, `close` ends it."""

    def __init__(self, server: RoomServer):
        settings = server.settings
        self.server = server
        self.negotiations = Negotiations()
        self.connections = Connections(
            keepalive=settings.hub_keepalive_seconds,
            client_timeout=settings.hub_client_timeout_seconds,
            disconnect_timeout=settings.hub_disconnect_timeout_seconds,
        )
        self.methods = HubMethods(server, self.connections.send, self.delivered)
        self._http: dict[str, HttpConnection] = {}
        self._sockets: set[str] = set()
        """Negotiated ids of the open WebSocket connections (an HTTP send to one is 405, as in ASP.NET)."""
        self._lives: set[asyncio.Task[None]] = set()
        self._follower: asyncio.Task[None] | None = None
        self._delivered = 0
        self._advanced = asyncio.Event()
        self._stopped = False
        self.router = APIRouter(tags=["hub"])
        self.router.add_api_route(
            "/room/negotiate",
            self.negotiate,
            methods=["POST"],
            summary="SignalR negotiate (versions 0 and 1): a connection id and the transports",
        )
        self.router.add_api_websocket_route("/room", self.connect)
        self.router.add_api_route(
            "/room", self.poll, methods=["GET"], summary="SignalR long poll, or the Server-Sent Events stream"
        )
        self.router.add_api_route(
            "/room", self.send, methods=["POST"], summary="SignalR send (long polling, Server-Sent Events)"
        )
        self.router.add_api_route(
            "/room", self.delete, methods=["DELETE"], summary="SignalR long polling: end the connection"
        )

    def authenticate(self, headers: Headers, query: QueryParams) -> Principal:
        authorization = headers.get("authorization")
        token = query.get("access_token")
        if authorization is None and token:
            authorization = f"Bearer {token}"
        principal = self.server.tokens.authenticate(authorization)
        principal.require(READ)
        return principal

    def _user(self, principal: Principal, headers: Headers) -> str | None:
        return headers.get("x-user-id") if self.server.settings.insecure_no_auth else principal.name

    def _admit(self) -> None:
        """Refuse a new connection while the hub has `hub_max_connections` open (503 `HUB_FULL`)."""
        limit = self.server.settings.hub_max_connections
        if len(self.connections) >= limit:
            raise RoomServerError(
                503,
                f"the hub has {limit} open connections, its limit (hub_max_connections): try again later",
                code="HUB_FULL",
            )

    async def negotiate(self, request: Request) -> JSONResponse:
        principal = self.authenticate(request.headers, request.query_params)
        self._admit()
        raw = request.query_params.get("negotiateVersion", "0")
        if not raw.isdigit():
            raise bad_request("INVALID_REQUEST", "negotiateVersion must be a non-negative integer")
        return JSONResponse(self.negotiations.issue(int(raw), principal.name))

    # --- WebSockets ---------------------------------------------------------------------------------------

    async def connect(self, websocket: WebSocket) -> None:
        """One WebSocket connection: authenticate, claim the negotiated id, then read until it ends."""
        try:
            principal = self.authenticate(websocket.headers, websocket.query_params)
            self._admit()
            key = websocket.query_params.get("id")
            connection_id = (
                secrets.token_urlsafe(16) if key is None else self.negotiations.claim(key, principal.name)
            )
        except RoomServerError as exc:
            await _deny(websocket, exc)
            return
        await websocket.accept()
        connection = WebSocketConnection(
            websocket,
            connection_id,
            principal,
            self._user(principal, websocket.headers),
            max_queued_bytes=self.server.settings.hub_max_queued_bytes,
        )
        self._open(connection)
        if key is not None:
            self._sockets.add(key)
        reader = asyncio.create_task(self._read(websocket, connection))
        try:
            await connection.write()
        finally:
            self._sockets.discard(key or "")
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, websocket: WebSocket, connection: WebSocketConnection) -> None:
        """Hand each WebSocket message to `receive` until the peer leaves."""
        try:
            while True:
                received = await websocket.receive()
                if received["type"] == "websocket.disconnect":
                    break
                if received.get("bytes") is not None:
                    connection.end(_FAILED + "Binary messages need the Binary transfer format.")
                else:
                    await self.receive(connection, received.get("text") or "")
        except (WebSocketDisconnect, RuntimeError):
            pass
        connection.abandon()

    # --- long polling and Server-Sent Events --------------------------------------------------------------

    def _connection(self, request: Request) -> tuple[str, Principal, HttpConnection | None]:
        principal = self.authenticate(request.headers, request.query_params)
        token = request.query_params.get("id")
        if not token:
            raise bad_request("INVALID_REQUEST", "id is required: the connectionToken of negotiate")
        connection = self._http.get(token)
        if connection is not None and connection.principal.name != principal.name:
            raise foreign_connection()
        return token, principal, connection

    async def poll(self, request: Request) -> Response:
        """`GET /room?id=`: the first claims the negotiated id; then a long poll or the SSE stream."""
        token, principal, connection = self._connection(request)
        events = "text/event-stream" in request.headers.get("accept", "")
        if connection is None:
            self._admit()
            connection_id = self.negotiations.claim(token, principal.name)
            kind = SseConnection if events else LongPollingConnection
            connection = kind(
                token,
                connection_id,
                principal,
                self._user(principal, request.headers),
                max_queued_bytes=self.server.settings.hub_max_queued_bytes,
            )
            self._http[token] = connection
            self._open(connection)
        elif isinstance(connection, SseConnection):
            raise RoomServerError(409, "the connection's event stream is already open", code="CONFLICT")
        elif events:
            raise bad_request("INVALID_REQUEST", "Cannot change transports mid-connection.")
        if isinstance(connection, SseConnection):
            return SseResponse(connection, {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        assert isinstance(connection, LongPollingConnection)
        timeout = self.server.settings.hub_long_poll_timeout_seconds
        status, body = await connection.poll(request.receive, within=timeout)
        if status == 204:
            return Response(status_code=204)
        return Response(body, media_type="application/octet-stream")

    async def send(self, request: Request) -> Response:
        """`POST /room?id=`: one message of the client (records, or the handshake first)."""
        token, _, connection = self._connection(request)
        if connection is None and token in self._sockets:
            raise RoomServerError(
                405, "POST requests are not allowed for WebSocket connections.", code="METHOD_NOT_ALLOWED"
            )
        if connection is None or connection.ending.is_set():
            raise unknown_connection()
        if connection.sending:
            raise RoomServerError(409, "another send of this connection is under way", code="CONFLICT")
        connection.sending = True
        try:
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > protocol.MAX_MESSAGE_BYTES:
                    connection.end(_FAILED + protocol.TOO_LARGE)
                    raise RoomServerError(413, protocol.TOO_LARGE, code="PAYLOAD_TOO_LARGE")
            try:
                text = body.decode()
            except UnicodeDecodeError:
                connection.end(_FAILED + "The message is not UTF-8 text.")
                raise bad_request("INVALID_REQUEST", "the body is not UTF-8 text") from None
            await self.receive(connection, text)
        finally:
            connection.sending = False
        return Response(media_type="text/plain")

    async def delete(self, request: Request) -> Response:
        """`DELETE /room?id=`: a long-polling client ends its connection."""
        _, _, connection = self._connection(request)
        if connection is None:
            raise unknown_connection()
        if not isinstance(connection, LongPollingConnection):
            raise bad_request(
                "INVALID_REQUEST", "Cannot terminate this connection using the DELETE endpoint."
            )
        connection.abandon()
        return Response(status_code=202, media_type="text/plain")

    # --- every connection ---------------------------------------------------------------------------------

    def _open(self, connection: Connection) -> None:
        self.connections.add(connection)
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow())
        life = asyncio.create_task(self._live(connection))
        self._lives.add(life)
        life.add_done_callback(self._lives.discard)
        timeout = self.server.settings.hub_handshake_timeout_seconds
        asyncio.get_running_loop().call_later(timeout, _handshake_expired, connection)

    async def receive(self, connection: Connection, text: str) -> None:
        """What the client sent (a WebSocket message, a POST body): the handshake first, then records;
        invocations are queued for the connection's worker (waiting while 64 are queued)."""
        if connection.ending.is_set():
            return
        connection.last_received = time.monotonic()
        if not connection.handshaken:
            try:
                records = protocol.split_records(text)
                error = protocol.parse_handshake(records[0])
            except protocol.ProtocolError as exc:
                error = str(exc)
            if error is not None:
                connection.close(protocol.handshake_frame(error))
                connection.end()
                return
            connection.handshaken = True
            connection.send(protocol.handshake_frame())
            records = records[1:]
        else:
            try:
                records = protocol.split_records(text)
            except protocol.ProtocolError as exc:
                connection.end(_FAILED + str(exc))
                return
        for record in records:
            try:
                message = protocol.parse_message(record)
            except protocol.ProtocolError as exc:
                connection.end(_FAILED + str(exc))
                return
            if isinstance(message, protocol.Invocation):
                await connection.invocations.put(message)
            elif message.type is protocol.MessageType.CLOSE:
                connection.end()
                return
            elif message.type is protocol.MessageType.STREAM_INVOCATION and message.invocation_id:
                connection.send(protocol.error_frame(message.invocation_id, "Streaming is not supported."))

    async def _live(self, connection: Connection) -> None:
        """A connection's life: its worker runs invocations until it ends; then the invocation under way
        finishes (its session stays consistent), the session leaves, and the close message goes out."""
        caller = Caller(connection.id, connection.user_id, connection.close_now, connection.principal.entity)
        worker = asyncio.create_task(self._work(caller, connection))
        try:
            await connection.ending.wait()
            while not connection.invocations.empty():
                connection.invocations.get_nowait()
            connection.invocations.put_nowait(None)
            await worker
            await self.methods.disconnected(connection.id)
        except Exception:
            log.exception("hub connection %s did not end cleanly", connection.id)
        finally:
            worker.cancel()
            connection.close()
            try:
                await connection.finished.wait()  # sent, or the peer left (a long poller: timed out)
            finally:
                self.connections.remove(connection.id)
                if isinstance(connection, HttpConnection):
                    # Polls of a closed connection answer 204 for a while, then the id is unknown (404).
                    asyncio.get_running_loop().call_later(
                        self.connections.disconnect_timeout, self._http.pop, connection.token, None
                    )

    async def _work(self, caller: Caller, connection: Connection) -> None:
        """Run the connection's invocations one after another (.NET's `MaximumParallelInvocationsPerClient`
        of 1); None ends it."""
        while (invocation := await connection.invocations.get()) is not None:
            frame = await dispatch(self.methods, caller, invocation)
            if frame is not None:
                connection.send(frame)

    async def _follow(self) -> None:
        """Deliver every stored event to its room's connections, in log order, until the server closes."""
        feed = self.server.feed
        cursor = self._delivered = feed.latest
        try:
            await self._follow_from(cursor)
        finally:
            self._stopped = True
            self._advanced.set()  # nobody waits for a delivery that will not come
            self.connections.close()  # the server stops: open polls and streams end now

    async def _follow_from(self, cursor: int) -> None:
        feed = self.server.feed
        while not feed.closing.is_set():
            known = feed.latest
            batch: list[RoomEvent] = []
            if known > cursor:
                batch = await self.server.db.run(repository.events_after, cursor, None, limit=_BATCH)
                for event in batch:
                    self._deliver(event)
            cursor = batch[-1].seq if len(batch) == _BATCH else max(known, batch[-1].seq if batch else cursor)
            self._delivered = cursor
            self._advanced.set()
            self._advanced = asyncio.Event()
            if len(batch) < _BATCH:
                await feed.wait_beyond(cursor, within=60.0)

    async def delivered(self, seq: int) -> None:
        """Return once the event `seq` went to its room's connections (so a method's completion follows
        the client events it caused, and a later direct message cannot overtake them)."""
        while self._delivered < seq and not self._stopped:
            await self._advanced.wait()

    def _deliver(self, event: RoomEvent) -> None:
        receivers = self.server.sessions.connections(event.room_id)
        if not receivers:
            return
        if event.kind == ev.MESSAGE:
            frame = protocol.invocation_frame("message", event.data)
        else:
            frame = protocol.invocation_frame("event", event.envelope())
        self.connections.send(receivers, frame)

    async def close(self) -> None:
        """Server shutdown: end every connection (their sessions leave), stop the sweep and the delivery."""
        self.connections.close()
        if self._lives:
            _, late = await asyncio.wait(set(self._lives), timeout=_SHUTDOWN_GRACE_SECONDS)
            for life in late:  # a long poller that does not poll again: nobody will take its close message
                life.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        await self.connections.stop()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None


def _handshake_expired(connection: Connection) -> None:
    """No handshake within the handshake timeout: the connection is dropped without an answer."""
    if not connection.handshaken:
        connection.abandon()


async def _deny(websocket: WebSocket, exc: RoomServerError) -> None:
    """Refuse the WebSocket upgrade with the error's status and E1 body (or a policy close where the
    server cannot answer an upgrade with a response)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=exc.status))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])
