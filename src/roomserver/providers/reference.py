"""The reference room server's provider dialect: JSON-RPC 2.0 over one WebSocket (`ws://`, `wss://`).

Exactly what the reference's `McpClient` speaks (docs/roomserver.md, "MCP tools"): no `initialize`;
`tools/list` with `params: {}` answers `result.tools[]` of `{id, title, description, inputSchema, policy}`
(keys case-sensitive); `tool/call` with `params: {toolId, input}` answers any JSON `result`, or
`error: {code, message}`. Only a response with a numeric `id` completes a request; anything else is
ignored. Timeouts are the supervisor's (`providers/supervisor.py`), around every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from roomserver.domain.mcp import ToolError, ToolErrorCode, ToolSpec


class ProtocolViolation(Exception):
    """The provider answered something the dialect does not allow (e.g. `tools` not a list)."""


def _tool(raw: Any) -> ToolSpec | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("id"), str) or not raw["id"]:
        return None
    title, description = raw.get("title"), raw.get("description")
    schema, policy = raw.get("inputSchema"), raw.get("policy")
    return ToolSpec(
        id=raw["id"],
        title=title if isinstance(title, str) else None,
        description=description if isinstance(description, str) else None,
        input_schema=schema if isinstance(schema, dict) else None,
        policy=policy if isinstance(policy, dict) else None,
    )


class ReferenceConnection:
    """One open WebSocket to a provider; `broken` is set when it closes."""

    def __init__(self, ws: ClientConnection):
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.broken = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self._ws:
                self._complete(data)
        except WebSocketException:
            pass
        finally:
            self.broken.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("the provider closed the connection"))

    def _complete(self, data: str | bytes) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        request_id = message.get("id")
        if not isinstance(request_id, int) or isinstance(request_id, bool):
            return
        future = self._pending.get(request_id)
        if future is None or future.done():
            return
        error = message.get("error")
        if isinstance(error, dict):
            code = error.get("code")
            future.set_exception(
                ToolError(
                    ToolErrorCode.MCP_ERROR,
                    str(error.get("message") or "MCP server error"),
                    code if isinstance(code, int) and not isinstance(code, bool) else 0,
                )
            )
        else:
            future.set_result(message.get("result"))

    async def _request(self, method: str, params: dict[str, Any]) -> Any:
        if self.broken.is_set():
            raise ConnectionError("the provider closed the connection")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._ws.send(
                json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
            )
            return await future
        finally:
            self._pending.pop(request_id, None)

    async def list_tools(self) -> list[ToolSpec]:
        result = await self._request("tools/list", {})
        tools = result.get("tools") if isinstance(result, dict) else None
        if not isinstance(tools, list):
            raise ProtocolViolation("tools/list answered no result.tools list")
        return [spec for spec in map(_tool, tools) if spec is not None]

    async def call(self, tool_id: str, args: Any) -> Any:
        return await self._request("tool/call", {"toolId": tool_id, "input": args})

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


@contextlib.asynccontextmanager
async def open_reference(url: str, *, max_bytes: int) -> AsyncIterator[ReferenceConnection]:
    """Connect to a provider; `max_bytes` caps one incoming frame (a bigger one closes the connection)."""
    async with connect(url, max_size=max_bytes, open_timeout=None, compression=None) as ws:
        connection = ReferenceConnection(ws)
        try:
            yield connection
        finally:
            await connection.close()
