"""A fault-injecting TCP proxy (asyncio streams) between the operator and the room server.

Unlike `tests/support/faults.py` (an HTTP proxy answering chosen requests), this one works on the bytes.
Each request (each read from the client that starts a request line, on new and kept-alive connections
alike) draws one fault at the configured rates, or none:

- `delay`: holds the request `delay_seconds` before forwarding it (past the client's timeout if longer);
- `reset`: resets the connection (RST, `SO_LINGER` 0) with the request unanswered, to both sides;
- `cut`: forwards the request, then resets the connection inside the answer (a body dropped mid-way);
- `status`: answers the request itself with a 500, 503 (`Retry-After`) or 429 (`Retry-After`);

`down` refuses every connection (accepted and closed at once), as a stopped server would look to a
client that holds a pooled address; `upstream` may change while the proxy runs (a restarted room server
on a new port); `script` names faults for the next requests, in order, before any is drawn. `counts`
records how many of each fault were injected.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import re
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

FAULTS = ("delay", "reset", "cut", "status")
CANNED = {
    500: b"HTTP/1.1 500 Internal Server Error\r\n",
    503: b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\n",
    429: b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n",
}
_REQUEST_LINE = re.compile(rb"[A-Z]{3,7} /")
_BODY = b'{"error":"Injected","code":"INJECTED_FAULT","message":"injected by the fault proxy"}'


@dataclass
class FaultRates:
    """The chance of each fault per request (their sum at most 1)."""

    delay: float = 0.0
    reset: float = 0.0
    cut: float = 0.0
    status: float = 0.0
    delay_seconds: float = 3.0

    @classmethod
    def uniform(cls, total: float, *, delay_seconds: float = 3.0) -> FaultRates:
        share = total / len(FAULTS)
        return cls(share, share, share, share, delay_seconds=delay_seconds)


@dataclass
class TcpFaultProxy:
    upstream: str  # http://127.0.0.1:<port>
    rates: FaultRates = field(default_factory=FaultRates)
    seed: int = 0
    down: bool = False
    script: list[str] = field(default_factory=list)  # faults for the next requests, in order, before any draw
    counts: collections.Counter[str] = field(default_factory=collections.Counter)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._tasks: set[asyncio.Task[None]] = set()

    def _draw(self) -> str | None:
        if self.script:
            return self.script.pop(0)
        roll = self._random.random()
        for name in FAULTS:
            roll -= getattr(self.rates, name)
            if roll < 0:
                return name
        return None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass  # `aclose`: the connection ends with the proxy (asyncio would log a cancelled handler)
        finally:
            self._tasks.discard(task)
            _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            self.counts["refused"] += 1
            _reset(writer)
            return
        target = urlsplit(self.upstream)
        up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port)
        cut = _Cut()
        try:
            await asyncio.gather(
                self._requests(reader, writer, up_writer, cut), _pump(up_reader, writer, cut=cut)
            )
        finally:
            _close(up_writer)

    async def _requests(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_writer: asyncio.StreamWriter,
        cut: _Cut,
    ) -> None:
        """Client to room server: a fault is drawn for each request (a read that starts a request line),
        so a kept-alive connection meets faults as often as a fresh one."""
        while data := await reader.read(64 * 1024):
            fault = self._draw() if _REQUEST_LINE.match(data) else None
            if fault is not None:
                self.counts[fault] += 1
            if fault == "reset":
                _reset(writer)
                _reset(up_writer)
                return
            if fault == "status":
                status = self._random.choice(sorted(CANNED))
                head = CANNED[status] + b"Content-Type: application/json\r\nConnection: close\r\n"
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(_BODY) + _BODY)
                await writer.drain()
                _close(writer)
                _reset(up_writer)
                return
            if fault == "delay":
                await asyncio.sleep(self.rates.delay_seconds)
            elif fault == "cut":
                cut.after = 1 + self._random.randrange(512)  # inside the answer's head or early in its body
            up_writer.write(data)
            await up_writer.drain()
        if up_writer.can_write_eof():
            up_writer.write_eof()

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class _Cut:
    """Where the answer now streaming is to be cut: after `after` more bytes (None: not at all)."""

    after: int | None = None


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter, *, cut: _Cut) -> None:
    """Room server to client, until EOF; reset both ends where `cut` says."""
    try:
        while data := await source.read(64 * 1024):
            if cut.after is not None and len(data) > cut.after:
                sink.write(data[: cut.after])
                await sink.drain()
                _reset(sink)
                return
            if cut.after is not None:
                cut.after -= len(data)
            sink.write(data)
            await sink.drain()
        if sink.can_write_eof():
            sink.write_eof()
    except (ConnectionError, OSError):
        _close(sink)


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    _close(writer)


def _close(writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(Exception):
        writer.close()


@contextlib.asynccontextmanager
async def tcp_fault_proxy(
    upstream: str, *, rates: FaultRates | None = None, seed: int = 0
) -> AsyncIterator[tuple[TcpFaultProxy, str]]:
    """The proxy on a random 127.0.0.1 port: yields (proxy, its URL)."""
    proxy = TcpFaultProxy(upstream, rates or FaultRates(), seed=seed)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield proxy, f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await proxy.aclose()
        await server.wait_closed()
