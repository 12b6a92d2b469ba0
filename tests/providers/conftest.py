"""Fixtures: the peers of the provider tests, all real and on 127.0.0.1.

- `stdio_command`: the SDK-written MCP server (`mcp_server.py`) as a command line (stdio);
- `mcp_http`: the same server over streamable HTTP, a subprocess on a random port;
- `reference_provider`: a small WebSocket server speaking the reference's JSON-RPC dialect;
- `unreachable`: a URL nothing listens on;
- `rest`: the hub tests' REST client of the test's `server`.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.hub.conftest import rest as rest  # the hub tests' REST client, over a test's own `server`
from tests.support.servers import free_port

MCP_SERVER = Path(__file__).with_name("mcp_server.py")

REFERENCE_TOOLS: list[dict[str, Any]] = [
    {
        "id": "search",
        "title": "Search",
        "description": "Finds documents.",
        "inputSchema": {"type": "object", "properties": {"q": {"type": "string"}}},
        "policy": {"rateLimit": {"perMinute": 3}},
    },
    {"id": "secret", "title": "Hidden", "policy": {"visibility": "entity"}},
    {"id": "owned", "policy": {"allowedEntities": "owner"}},
    {"id": "broken"},
    {"id": "hang"},
    {"id": "echo"},
]


async def until(check: Callable[[], Awaitable[bool]], *, what: str, limit: float = 10.0) -> None:
    """Poll `check` until it holds, for at most `limit` seconds."""
    step = 0.02
    for _ in range(int(limit / step)):
        if await check():
            return
        await asyncio.sleep(step)  # provider states change in background tasks: there is no event to await
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def stdio_command() -> list[str]:
    return [sys.executable, str(MCP_SERVER), "stdio"]


def _wait_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("the MCP HTTP server exited before it listened")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("the MCP HTTP server did not listen in time")


@pytest.fixture(scope="session")
def mcp_http() -> Iterator[str]:
    """`http://127.0.0.1:<port>/mcp`, the SDK server over streamable HTTP (one process for the session)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(MCP_SERVER), "http", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(port, process)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        process.wait(timeout=10)


class ReferenceProvider:
    """The reference dialect's peer: counts connections and calls, answers `tools/list` and `tool/call`."""

    def __init__(self) -> None:
        self.url = ""
        self.connections = 0
        self.calls: list[dict[str, Any]] = []
        self.tools = list(REFERENCE_TOOLS)
        self._open: set[ServerConnection] = set()

    async def drop(self) -> None:
        """Close every open connection (the provider went away for a moment)."""
        for ws in list(self._open):
            await ws.close()

    async def handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self._open.add(ws)
        try:
            await self._serve(ws)
        finally:
            self._open.discard(ws)

    async def _serve(self, ws: ServerConnection) -> None:
        async for data in ws:
            request = json.loads(data)
            method, params = request.get("method"), request.get("params")
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": "not-numeric", "result": "ignored"}))
            if method == "tools/list":
                await ws.send(
                    json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": {"tools": self.tools}})
                )
                continue
            assert method == "tool/call"
            assert isinstance(params, dict)
            self.calls.append(params)
            tool = params["toolId"]
            if tool == "hang":
                continue
            answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
            if tool == "broken":
                answer["error"] = {"code": -32050, "message": "search backend down"}
            else:
                answer["result"] = {"tool": tool, "input": params["input"]}
            await ws.send(json.dumps(answer))


@pytest.fixture
async def reference_provider() -> AsyncIterator[ReferenceProvider]:
    provider = ReferenceProvider()
    async with serve(provider.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        provider.url = f"ws://127.0.0.1:{port}/mcp"
        yield provider


@pytest.fixture
def unreachable() -> str:
    return f"ws://127.0.0.1:{free_port()}/mcp"
