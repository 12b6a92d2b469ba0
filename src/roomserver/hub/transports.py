"""The hub's three transports as ASP.NET Core SignalR speaks them: WebSockets, long polling, SSE.

Each is a `Connection` (`connections.py`) that only moves frames: the hub's rules never see which one
carries a connection. What arrives (a WebSocket message, a POST body) goes to `Hub.receive`; what leaves
is taken from the connection's outbox:

- `WebSocketConnection.write` sends each batch as one WebSocket text message;
- `LongPollingConnection.poll` answers one `GET /room?id=` with the batch (200), nothing after the poll
  timeout (200, empty body), or 204 once the connection is closed, or when a newer poll or a DELETE
  replaced this one. The first poll is answered at once, empty (it activates the connection, as
  ASP.NET's does). Its liveness is its polls (`tick`);
- `SseResponse` streams an `SseConnection`'s frames as `text/event-stream`, one event per frame
  (`sse_event`), after a `:` comment line that makes browsers fire `open`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Mapping
from typing import Final

from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from roomserver.auth import Principal
from roomserver.hub.connections import Connection

_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")


async def disconnected(receive: Receive) -> None:
    """Return once the HTTP client went away (its request's `http.disconnect`)."""
    while (await receive())["type"] != "http.disconnect":
        pass


class WebSocketConnection(Connection):
    """A connection on a WebSocket: its writer task sends what gathers, several records per message."""

    def __init__(
        self,
        websocket: WebSocket,
        connection_id: str,
        principal: Principal,
        user_id: str | None,
        **limits: int,
    ):
        super().__init__(connection_id, principal, user_id, **limits)
        self.websocket = websocket

    async def write(self) -> None:
        """The writer task: send batches until the last frame went, then close the socket."""
        try:
            while (batch := await self.take()) is not None:
                await self.websocket.send_text("".join(batch))
                if self.finished.is_set():
                    await self.websocket.close()
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the peer went away; the reader sees it too
        finally:
            self.abandon()


class HttpConnection(Connection):
    """A connection whose client sends by `POST /room?id=<token>`: the token it is found by, and whether a
    send is under way (one at a time keeps records in order)."""

    def __init__(
        self, token: str, connection_id: str, principal: Principal, user_id: str | None, **limits: int
    ):
        super().__init__(connection_id, principal, user_id, **limits)
        self.token = token
        self.sending = False


class LongPollingConnection(HttpConnection):
    """Long polling: `poll` answers the GETs; a connection with no poll outstanding for the disconnect
    timeout is abandoned (ASP.NET's `DisconnectTimeout`), and it is never pinged (its polls are)."""

    def __init__(
        self, token: str, connection_id: str, principal: Principal, user_id: str | None, **limits: int
    ):
        super().__init__(token, connection_id, principal, user_id, **limits)
        self._started = False
        self._current: asyncio.Event | None = None
        self._last_poll = time.monotonic()

    def tick(self, now: float, *, client_timeout: float, disconnect_timeout: float) -> None:
        if self._current is None and now - self._last_poll > disconnect_timeout:
            self.abandon()

    def shut_down(self) -> None:
        if self._current is None:
            self.abandon()  # no poll would take the close message: do not wait for one
        else:
            super().shut_down()

    def replace_poll(self) -> None:
        """End the outstanding poll (204): a newer poll or a DELETE takes its place."""
        if self._current is not None:
            self._current.set()

    async def poll(self, receive: Receive, *, within: float) -> tuple[int, str]:
        """One poll's answer: (status, body); see the module docstring."""
        self.replace_poll()
        replaced = self._current = asyncio.Event()
        if not self._started:
            self._started = True
            self._current, self._last_poll = None, time.monotonic()
            return 200, ""
        taking = asyncio.create_task(self.take(within=within))
        waits = [taking, asyncio.create_task(replaced.wait()), asyncio.create_task(disconnected(receive))]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            if self._current is replaced:
                self._current, self._last_poll = None, time.monotonic()
        batch = taking.result() if taking.done() and not taking.cancelled() else None
        if batch is None:
            return 204, ""
        return 200, "".join(batch)


class SseConnection(HttpConnection):
    """Server-Sent Events: `SseResponse` streams it (Text format only, as SignalR's)."""


def sse_event(payload: str) -> str:
    """One SSE event: a `data:` line per line of the payload, then a blank line (CRLF, as ASP.NET writes)."""
    return "".join(f"data: {line}\r\n" for line in _LINE_BREAK.split(payload)) + "\r\n"


class SseResponse(Response):
    """The `text/event-stream` answer of an SSE connection's GET, open until the connection finishes or
    the client leaves (which abandons the connection)."""

    def __init__(self, connection: SseConnection, headers: Mapping[str, str]):
        self.status_code = 200
        self.media_type = "text/event-stream"
        self.background = None
        self.init_headers(headers)  # no body: no Content-Length (as StreamingResponse does)
        self.connection = connection

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection = self.connection
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        gone = asyncio.create_task(disconnected(receive))
        try:
            await send({"type": "http.response.body", "body": b":\r\n", "more_body": True})
            while True:
                taking = asyncio.create_task(connection.take())
                await asyncio.wait([taking, gone], return_when=asyncio.FIRST_COMPLETED)
                if not taking.done():
                    taking.cancel()
                    return
                batch = taking.result()
                if batch is None:
                    break
                body = "".join(sse_event(frame) for frame in batch).encode()
                await send({"type": "http.response.body", "body": body, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:
            return
        finally:
            gone.cancel()
            connection.abandon()
