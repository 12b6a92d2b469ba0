"""Standard MCP servers through the official `mcp` SDK: streamable HTTP (`http://`, `https://`) and stdio
(`stdio:<name>`, the command the settings give that name).

`tools/list` (every page) feeds the catalog, `tools/call` answers the result as JSON (`content`,
`structuredContent`, `isError`); a JSON-RPC error or a result with `isError: true` is an `MCP_ERROR`.
The SDK's client runs on anyio: `open_standard` must be entered and left in one task (the supervisor's
task for this provider); calls may come from any task. Timeouts are the supervisor's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from mcp import Client, MCPError, StdioServerParameters
from mcp.types import CallToolResult, TextContent

from roomserver.domain.mcp import RpcCode, ToolError, ToolErrorCode, ToolSpec

MAX_PAGES = 100
"""`tools/list` pages read at most (a provider whose cursor never ends cannot hold a connection up)."""


def _output(result: CallToolResult) -> dict[str, Any]:
    dumped = result.model_dump(mode="json", by_alias=True, exclude_none=True)
    return {key: dumped[key] for key in ("content", "structuredContent", "isError") if key in dumped}


class StandardConnection:
    """One initialised MCP client session; `broken` is set by the supervisor when a call loses it."""

    def __init__(self, client: Client):
        self._client = client
        self.broken = asyncio.Event()

    async def list_tools(self) -> list[ToolSpec]:
        tools: list[ToolSpec] = []
        cursor: str | None = None
        for _ in range(MAX_PAGES):
            page = await self._client.list_tools(cursor=cursor, cache_mode="bypass")
            tools += [
                ToolSpec(id=t.name, title=t.title, description=t.description, input_schema=t.input_schema)
                for t in page.tools
            ]
            cursor = page.next_cursor
            if cursor is None:
                break
        return tools

    async def call(self, tool_id: str, args: Any) -> Any:
        if args is not None and not isinstance(args, dict):
            raise ToolError(ToolErrorCode.MCP_ERROR, "MCP tool arguments must be a JSON object", -32602)
        try:
            result = await self._client.call_tool(tool_id, args)
        except MCPError as exc:
            raise ToolError(ToolErrorCode.MCP_ERROR, exc.message, exc.code) from exc
        if result.is_error:
            text = " ".join(c.text for c in result.content if isinstance(c, TextContent))
            raise ToolError(ToolErrorCode.MCP_ERROR, text or "the tool failed", RpcCode.TOOL_FAILED)
        return _output(result)


@contextlib.asynccontextmanager
async def open_standard(target: str | list[str]) -> AsyncIterator[StandardConnection]:
    """Connect to a streamable HTTP URL, or start a command line (argv) and talk over its stdio."""
    server: str | StdioServerParameters = (
        target if isinstance(target, str) else StdioServerParameters(command=target[0], args=target[1:])
    )
    async with Client(server) as client:
        yield StandardConnection(client)
