"""A standard MCP server written with the official `mcp` SDK, the peer of the provider tests.

`python -m tests.providers.mcp_server stdio` serves it over stdin/stdout; `... http PORT` over streamable
HTTP on 127.0.0.1:PORT at `/mcp`. Its tools: `echo`, `add`, `slow` (sleeps), `big` (a long answer) and
`fail` (a tool error).
"""

from __future__ import annotations

import asyncio
import sys

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("provider-tests", log_level="WARNING")


@server.tool(description="Answers its text.")
def echo(text: str) -> str:
    return text


@server.tool(description="Adds two integers.")
def add(a: int, b: int) -> int:
    return a + b


@server.tool(description="Answers after `seconds`.")
async def slow(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


@server.tool(description="Answers `size` characters.")
def big(size: int) -> str:
    return "x" * size


@server.tool(description="Always fails.")
def fail() -> str:
    raise ToolError("this tool always fails")


def main() -> None:
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
