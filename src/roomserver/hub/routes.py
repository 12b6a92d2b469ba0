"""The hub at `/room`: negotiate, the WebSocket transport, and the event log's delivery to room groups.

`Hub` composes the parts: negotiation ids (`negotiate.py`), open connections (`connections.py`), the
methods (`methods.py`) over the JSON protocol (`protocol.py`). Authentication is the REST one: a bearer
token with `room:read`, in the `Authorization` header or the `access_token` query parameter (what
browsers' SignalR clients send); the user of the connection is the token's name (`X-User-Id` only in
insecure dev mode).

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
from fastapi.responses import JSONResponse
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
from roomserver.hub.negotiate import Negotiations
from roomserver.server import RoomServer
from roomserver.storage import repository

log = logging.getLogger("roomserver.hub")

_BATCH: Final = 500
_MAX_QUEUED_INVOCATIONS: Final = 64


class Hub:
    """The live room: one per app (`app.state.hub`); `router` serves it, `close` ends it."""

    def __init__(self, server: RoomServer):
        settings = server.settings
        self.server = server
        self.negotiations = Negotiations()
        self.connections = Connections(
            keepalive=settings.hub_keepalive_seconds, client_timeout=settings.hub_client_timeout_seconds
        )
        self.methods = HubMethods(server, self.connections.send, self.delivered)
        self._follower: asyncio.Task[None] | None = None
        self._delivered = 0
        self._advanced = asyncio.Event()
        self._stopped = False
        self.router = APIRouter(tags=["hub"])
        self.router.add_api_route(
            "/room/negotiate",
            self.negotiate,
            methods=["POST"],
            summary="SignalR negotiate (versions 0 and 1): a connection id and the WebSockets transport",
        )
        self.router.add_api_websocket_route("/room", self.connect)

    def authenticate(self, headers: Headers, query: QueryParams) -> Principal:
        authorization = headers.get("authorization")
        token = query.get("access_token")
        if authorization is None and token:
            authorization = f"Bearer {token}"
        principal = self.server.tokens.authenticate(authorization)
        principal.require(READ)
        return principal

    async def negotiate(self, request: Request) -> JSONResponse:
        self.authenticate(request.headers, request.query_params)
        raw = request.query_params.get("negotiateVersion", "0")
        if not raw.isdigit():
            raise bad_request("INVALID_REQUEST", "negotiateVersion must be a non-negative integer")
        return JSONResponse(self.negotiations.issue(int(raw)))

    async def connect(self, websocket: WebSocket) -> None:
        """One WebSocket connection: authenticate, claim the negotiated id, handshake, then serve it."""
        try:
            principal = self.authenticate(websocket.headers, websocket.query_params)
            key = websocket.query_params.get("id")
            connection_id = secrets.token_urlsafe(16) if key is None else self.negotiations.claim(key)
            if connection_id is None:
                raise RoomServerError(404, "No Connection with that ID", code="CONNECTION_NOT_FOUND")
        except RoomServerError as exc:
            await _deny(websocket, exc)
            return
        await websocket.accept()
        rest = await self._handshake(websocket)
        if rest is None:
            return
        user_id = (
            websocket.headers.get("x-user-id") if self.server.settings.insecure_no_auth else principal.name
        )
        connection = Connection(websocket, connection_id, principal, user_id)
        self.connections.add(connection)
        if self._follower is None:
            self._follower = asyncio.create_task(self._follow())
        writer = asyncio.create_task(connection.write())
        caller = Caller(connection_id, user_id, connection.close_now, principal.entity)
        invocations: asyncio.Queue[protocol.Invocation | None] = asyncio.Queue(_MAX_QUEUED_INVOCATIONS)
        worker = asyncio.create_task(self._work(caller, connection, invocations))
        connection.send(protocol.handshake_frame())
        try:
            await self._serve(websocket, connection, invocations, rest)
        finally:
            while not invocations.empty():
                invocations.get_nowait()
            invocations.put_nowait(None)
            await worker  # the invocation under way ends first (its session stays consistent)
            self.connections.remove(connection_id)
            await self.methods.disconnected(connection_id)
            connection.close()
            await writer

    async def _handshake(self, websocket: WebSocket) -> str | None:
        """The handshake request, within the handshake timeout; the records after it, or None when it
        failed (the error, when there is one to say, was sent and the socket closed)."""
        timeout = self.server.settings.hub_handshake_timeout_seconds
        try:
            text = await asyncio.wait_for(websocket.receive_text(), timeout)
        except (WebSocketDisconnect, RuntimeError, KeyError):
            return None
        except TimeoutError:
            await websocket.close(code=1002, reason="handshake timeout")
            return None
        head, separator, rest = text.partition(protocol.RS)
        try:
            if not separator or len(text.encode()) > protocol.MAX_MESSAGE_BYTES:
                raise protocol.ProtocolError("Handshake request is incomplete or too large.")
            error = protocol.parse_handshake(head)
        except protocol.ProtocolError as exc:
            error = str(exc)
        if error is None:
            return rest
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await websocket.send_text(protocol.handshake_frame(error))
            await websocket.close(code=1002)
        return None

    async def _serve(
        self,
        websocket: WebSocket,
        connection: Connection,
        invocations: asyncio.Queue[protocol.Invocation | None],
        text: str,
    ) -> None:
        """Read client messages until the peer closes; invocations go to the connection's worker."""
        while True:
            if text:
                connection.last_received = time.monotonic()
                try:
                    for record in protocol.split_records(text):
                        message = protocol.parse_message(record)
                        if isinstance(message, protocol.Invocation):
                            await invocations.put(message)
                        elif message.type is protocol.MessageType.CLOSE:
                            return
                        elif message.type is protocol.MessageType.STREAM_INVOCATION and message.invocation_id:
                            connection.send(
                                protocol.error_frame(message.invocation_id, "Streaming is not supported.")
                            )
                except protocol.ProtocolError as exc:
                    connection.close(f"Connection closed with an error. {exc}")
                    return
            try:
                received = await websocket.receive()
            except (WebSocketDisconnect, RuntimeError):
                return
            if received["type"] == "websocket.disconnect":
                return
            text = received.get("text") or ""
            if received.get("bytes") is not None:
                connection.close(
                    "Connection closed with an error. Binary messages need the Binary transfer format."
                )
                return

    async def _work(
        self, caller: Caller, connection: Connection, invocations: asyncio.Queue[protocol.Invocation | None]
    ) -> None:
        """Run the connection's invocations one after another (.NET's `MaximumParallelInvocationsPerClient`
        of 1); None ends it."""
        while (invocation := await invocations.get()) is not None:
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
        """Server shutdown: close every connection, stop the delivery."""
        await self.connections.close()
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None


async def _deny(websocket: WebSocket, exc: RoomServerError) -> None:
    """Refuse the WebSocket upgrade with the error's status and E1 body (or a policy close where the
    server cannot answer an upgrade with a response)."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(exc.body(), status_code=exc.status))
    else:
        await websocket.close(code=1008, reason=exc.message[:120])
