"""The room server's MCP provider clients and the supervisor that runs their state machines.

`reference.py` speaks the reference's JSON-RPC dialect over WebSocket, `standard.py` standard MCP through
the official SDK (streamable HTTP, stdio), `supervisor.py` connects, retries, probes and calls them. The
rules are `roomserver.domain.mcp`'s.
"""
