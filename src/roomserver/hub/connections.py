"""Open hub connections: each one's outgoing frames and liveness, and the registry that pings them all.

A `Connection` never writes to its WebSocket from the caller's task: `send` appends a frame to its outbox
and its writer task sends what has gathered as one WebSocket message (several records per message, as
the protocol allows), so a broadcast to a thousand connections costs a thousand appends, and a slow
client delays only itself. An outbox past `MAX_OUTBOX_BYTES` closes that connection (a reader that does
not read is dropped rather than allowed to grow the server's memory).

`Connections.sweep` runs once per keep-alive interval for every connection: it queues a ping (the
server's keep-alive, every 15 s by default) and closes a connection that sent nothing for the client
timeout (30 s by default), as ASP.NET Core's `KeepAliveInterval` and `ClientTimeoutInterval` do.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Final

from starlette.websockets import WebSocket, WebSocketDisconnect

from roomserver.auth import Principal
from roomserver.hub import protocol

log = logging.getLogger("roomserver.hub")

MAX_OUTBOX_BYTES: Final = 4 * 1024 * 1024
_MAX_BATCH_CHARS: Final = 64 * 1024


class Connection:
    """One hub connection after its handshake: who holds it, what waits to be sent, when it last spoke."""

    def __init__(self, websocket: WebSocket, connection_id: str, principal: Principal, user_id: str | None):
        self.websocket = websocket
        self.id = connection_id
        self.principal = principal
        self.user_id = user_id
        self.last_received = time.monotonic()
        self.closed = asyncio.Event()
        self._outbox: collections.deque[str] = collections.deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._close_frame: str | None = None

    def send(self, frame: str) -> None:
        """Queue a frame (never blocks); a connection whose outbox overflows is closed."""
        if self._close_frame is not None:
            return
        self._outbox.append(frame)
        self._queued += len(frame)
        if self._queued > MAX_OUTBOX_BYTES:
            self._outbox.clear()
            self.close("The client does not read its messages: outgoing buffer full.")
        self._wake.set()

    def close(self, error: str | None = None, *, allow_reconnect: bool = False) -> None:
        """Send a close message (with `error` as its reason) after what is queued, then close the socket."""
        if self._close_frame is None:
            self._close_frame = protocol.close_frame(error, allow_reconnect=allow_reconnect)
            self._wake.set()

    async def close_now(self) -> None:
        """The session callback (`LiveSessions.close`): close, reason given to the client."""
        self.close("The entity was removed from the room.")

    async def write(self) -> None:
        """The writer task: send queued frames in batches until closed, then the close message."""
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._outbox:
                    batch: list[str] = []
                    size = 0
                    while self._outbox and (not batch or size + len(self._outbox[0]) <= _MAX_BATCH_CHARS):
                        frame = self._outbox.popleft()
                        batch.append(frame)
                        size += len(frame)
                    self._queued -= size
                    await self.websocket.send_text("".join(batch))
                if self._close_frame is not None:
                    await self.websocket.send_text(self._close_frame)
                    await self.websocket.close()
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return  # the peer went away; the reader sees it too
        finally:
            self.closed.set()


class Connections:
    """Every open connection by id; the keep-alive sweep."""

    def __init__(self, *, keepalive: float, client_timeout: float):
        self._open: dict[str, Connection] = {}
        self.keepalive = keepalive
        self.client_timeout = client_timeout
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: Connection) -> None:
        self._open[connection.id] = connection
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever())

    def remove(self, connection_id: str) -> None:
        self._open.pop(connection_id, None)

    def get(self, connection_id: str) -> Connection | None:
        return self._open.get(connection_id)

    def send(self, connection_ids: list[str], frame: str) -> None:
        """The same frame to each of these connections (a group send)."""
        for connection_id in connection_ids:
            connection = self._open.get(connection_id)
            if connection is not None:
                connection.send(frame)

    def sweep(self, now: float) -> None:
        """Ping every connection; close those that sent nothing for the client timeout."""
        for connection in list(self._open.values()):
            if now - connection.last_received > self.client_timeout:
                connection.close(
                    f"Server timeout elapsed: nothing received from the client for {self.client_timeout:g} s."
                )
            else:
                connection.send(protocol.PING_FRAME)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            self.sweep(time.monotonic())

    async def close(self) -> None:
        """Server shutdown: close every connection and stop the sweep."""
        for connection in list(self._open.values()):
            connection.close("Server is shutting down.", allow_reconnect=True)
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
