"""Hostile clients over real sockets against `roomserver serve` (issue 13): half-sent request heads, silent
and idle connections, slow bodies, and huge unauthenticated bodies, each answered and closed by the server
without reading what it refused (its memory is checked as a sanity bound)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest

from tests.support.roomserver import RoomServerProcess, start_roomserver_process

pytestmark = pytest.mark.slow

ROOM = "room-slow-clients"
MIB = 1024 * 1024
GUARD = 30.0  # seconds: only a bound on a hang, never the thing asserted


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RoomServerProcess]:
    """`roomserver serve` with 1 s head, body and keep-alive timeouts (set through `ROOMSERVER_*`)."""
    for name in ("HEADER_TIMEOUT_SECONDS", "BODY_TIMEOUT_SECONDS", "KEEP_ALIVE_SECONDS"):
        monkeypatch.setenv(f"ROOMSERVER_{name}", "1")
    handle = start_roomserver_process(tmp_path / "data")
    try:
        yield handle
    finally:
        handle.stop()


def _address(server: RoomServerProcess) -> tuple[str, int]:
    parts = urlsplit(server.url)
    assert parts.hostname is not None
    assert parts.port is not None
    return parts.hostname, parts.port


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await asyncio.wait_for(reader.read(), GUARD)


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


async def test_300_half_sent_request_heads_are_all_answered_408_and_closed(server: RoomServerProcess) -> None:
    host, port = _address(server)
    connections = [await asyncio.open_connection(host, port) for _ in range(300)]
    for index, (_, writer) in enumerate(connections):
        partial = [b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ", b"GET /heal", b""][index % 3]
        writer.write(partial)
    answers = await asyncio.gather(*(_until_closed(reader) for reader, _ in connections))
    assert [_status(answer) for answer in answers] == [408] * 300
    for _, writer in connections:
        writer.close()
    # The server still serves everyone else.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert _status(await _until_closed(reader)) == 200
    writer.close()


async def test_a_head_dripped_byte_by_byte_is_cut_off(server: RoomServerProcess) -> None:
    host, port = _address(server)
    reader, writer = await asyncio.open_connection(host, port)
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Drip: " + b"y" * 200 + b"\r\n\r\n"
    closed = asyncio.ensure_future(_until_closed(reader))
    sent = 0
    while not closed.done() and sent < len(head):
        with contextlib.suppress(ConnectionError):
            writer.write(head[sent : sent + 1])
            await writer.drain()
        sent += 1
        await asyncio.wait({closed}, timeout=0.05)  # the drip itself: one byte per 50 ms
    assert _status(await closed) == 408
    assert sent < len(head)  # closed before the head was whole, though bytes kept arriving
    writer.close()


async def test_an_idle_keep_alive_connection_is_closed(server: RoomServerProcess) -> None:
    host, port = _address(server)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = await _until_closed(reader)  # the answer, then the close of the idle connection
    assert _status(answer) == 200
    assert answer.endswith(b"Healthy")
    writer.close()


async def test_a_body_that_stops_arriving_is_408(server: RoomServerProcess) -> None:
    host, port = _address(server)
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        f"POST /room/{ROOM}/join HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
        "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n".encode()
        + b'{"entityId":'
    )
    answer = await _until_closed(reader)
    assert _status(answer) == 408
    assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "BODY_TIMEOUT"
    writer.close()


def _rss(server: RoomServerProcess) -> int:
    rss: int = psutil.Process(server.process.pid).memory_info().rss
    return rss


def _send_huge(server: RoomServerProcess, head: bytes, size: int) -> tuple[bytes, int]:
    """Send `head`, read the answer before sending any body, then try to send `size` bytes of body:
    the answer, and how much of the body the connection took before the server's close stopped it."""
    with socket.create_connection(_address(server), timeout=GUARD) as sock:
        sock.sendall(head)
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            assert piece, "closed without an answer"
            answer += piece
        sent, chunk = 0, b"{" * MIB
        with contextlib.suppress(ConnectionError):
            while sent < size:
                sent += sock.send(chunk)
        return answer, sent


@pytest.mark.parametrize("token", [False, True], ids=["no-token", "valid-token"])
def test_50_mb_bodies_are_answered_before_they_are_sent_and_never_read(
    server: RoomServerProcess, token: bool
) -> None:
    size = 50 * MIB
    routes = [
        ("POST", f"/room/{ROOM}/join"),
        ("PUT", f"/rooms/{ROOM}/policies"),
        ("POST", "/admin/mcp/load"),
        ("POST", f"/rooms/{ROOM}/artifacts/promote"),
    ]
    before = _rss(server)
    for method, path in routes * 2:
        auth = f"Authorization: Bearer {server.admin_token}\r\n" if token else ""
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\n"
            f"Content-Length: {size}\r\n\r\n"
        ).encode()
        answer, sent = _send_huge(server, head, size)
        assert _status(answer) == (413 if token else 401), answer
        assert b"connection: close" in answer.lower()
        assert sent < size  # the server closed the connection instead of reading the body
    grown = _rss(server) - before
    assert grown < 32 * MIB, f"room server RSS grew by {grown / MIB:.1f} MiB"
