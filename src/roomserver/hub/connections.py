"""Open hub connections, whatever their transport: outgoing frames, lifecycle, liveness, and the registry.

A `Connection` is what the hub's rules see: who holds it, its queued invocations, and an outbox. `send`
never blocks and never writes to the network: it appends a frame, and the transport (`transports.py`:
WebSocket, long polling, Server-Sent Events) takes what has gathered with `take`, so a broadcast to a
thousand connections costs a thousand appends and a slow client delays only itself. An outbox past its
byte bound ends that connection with a reason (a reader that does not read is dropped rather than allowed
to grow the server's memory).

Lifecycle: `end(reason)` asks the hub to end the connection (a protocol error, a kick, a timeout, a full
outbox, the client's close message); the hub then lets the invocation under way finish, removes the
session, and `close` queues the last frame (the close message with the reason), which the transport
sends after everything queued before it. `abandon` is the transport gone (the peer left): nothing more is
sent. `finished` is set once the last frame was taken or the peer left.

`Connections.sweep` runs once per keep-alive interval: it queues a ping and ends a connection that sent
nothing for the client timeout (ASP.NET Core's `KeepAliveInterval` and `ClientTimeoutInterval`), except
on long polling, whose liveness is its polls (ASP.NET's inherent keep-alive): a long-polling connection
with no poll outstanding for the disconnect timeout is abandoned (its presence is left).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Final

from roomserver.auth import Principal
from roomserver.hub import protocol

log = logging.getLogger("roomserver.hub")

MAX_BATCH_CHARS: Final = 64 * 1024
"""What one `take` hands the transport at most (one WebSocket message, one poll answer)."""
MAX_QUEUED_INVOCATIONS: Final = 64


class Connection:
    """One hub connection: who holds it, what waits to be sent, when it last spoke, how it ends."""

    def __init__(
        self, connection_id: str, principal: Principal, user_id: str | None, *, max_queued_bytes: int
    ):
        self.id = connection_id
        self.principal = principal
        self.user_id = user_id
        self.max_queued_bytes = max_queued_bytes
        self.last_received = time.monotonic()
        self.handshaken = False
        self.invocations: asyncio.Queue[protocol.Invocation | None] = asyncio.Queue(MAX_QUEUED_INVOCATIONS)
        self.ending = asyncio.Event()
        self.end_error: str | None = None
        self.end_reconnect = False
        self.finished = asyncio.Event()
        self._outbox: collections.deque[str] = collections.deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._final: str | None = None
        self._dropping = False

    def send(self, frame: str) -> None:
        """Queue a frame (never blocks); an outbox past its bound is dropped and the connection ended."""
        if self._dropping or self._final is not None:
            return
        self._outbox.append(frame)
        self._queued += len(frame)
        if self._queued > self.max_queued_bytes:
            self._outbox.clear()
            self._queued = 0
            self._dropping = True
            self.end("The client does not read its messages: outgoing buffer full.")
        self._wake.set()

    def end(self, error: str | None = None, *, allow_reconnect: bool = False) -> None:
        """Ask the hub to end the connection (the first reason wins); see the module docstring."""
        if not self.ending.is_set():
            self.end_error, self.end_reconnect = error, allow_reconnect
            self.ending.set()

    async def close_now(self) -> None:
        """The session callback (`LiveSessions.close`): an entity removed by the operator."""
        self.end("The entity was removed from the room.")

    def close(self, final: str | None = None) -> None:
        """Queue the last frame (default: the close message with the end's reason) after what is queued."""
        if self._final is None and not self.finished.is_set():
            self._final = final or protocol.close_frame(self.end_error, allow_reconnect=self.end_reconnect)
            self._wake.set()

    def abandon(self) -> None:
        """The peer is gone: drop what is queued, send nothing more, and have the hub end the connection."""
        self._outbox.clear()
        self._dropping = True
        self.finished.set()
        self._wake.set()
        self.end()

    async def take(self, *, within: float | None = None) -> list[str] | None:
        """The frames to send next (at most `MAX_BATCH_CHARS`, at least one; the last frame last); `[]`
        when `within` seconds passed with nothing to send; None once finished. Cancelling it loses nothing."""
        if not self._outbox and self._final is None and not self.finished.is_set():
            self._wake.clear()
            try:
                async with asyncio.timeout(within):
                    await self._wake.wait()
            except TimeoutError:
                return []
        if self.finished.is_set():
            return None
        batch: list[str] = []
        size = 0
        while self._outbox and (not batch or size + len(self._outbox[0]) <= MAX_BATCH_CHARS):
            frame = self._outbox.popleft()
            batch.append(frame)
            size += len(frame)
        self._queued -= size
        if not self._outbox and self._final is not None:
            batch.append(self._final)
            self.finished.set()
        return batch

    def shut_down(self) -> None:
        """The server stops: end the connection (the client may reconnect)."""
        self.end("Server is shutting down.", allow_reconnect=True)

    def tick(self, now: float, *, client_timeout: float, disconnect_timeout: float) -> None:
        """The sweep's visit: end a connection silent past the client timeout, else ping it."""
        if now - self.last_received > client_timeout:
            self.end(f"Server timeout elapsed: nothing received from the client for {client_timeout:g} s.")
        else:
            self.send(protocol.PING_FRAME)


class Connections:
    """Every open connection by id; the keep-alive sweep."""

    def __init__(self, *, keepalive: float, client_timeout: float, disconnect_timeout: float):
        self._open: dict[str, Connection] = {}
        self.keepalive = keepalive
        self.client_timeout = client_timeout
        self.disconnect_timeout = disconnect_timeout
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
        """Visit every handshaken connection (`Connection.tick`: a ping, or the end of an idle one)."""
        for connection in list(self._open.values()):
            if connection.handshaken:  # before it, the handshake timeout rules (and a ping would be wrong)
                connection.tick(
                    now, client_timeout=self.client_timeout, disconnect_timeout=self.disconnect_timeout
                )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.keepalive)
            self.sweep(time.monotonic())

    def close(self) -> None:
        """Server shutdown: end every connection (the clients may reconnect)."""
        for connection in list(self._open.values()):
            connection.shut_down()

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
