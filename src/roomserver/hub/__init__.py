"""The SignalR hub at `/room`: the live room (presence, messages, commands, MCP tools), reference-compatible.

Protocol (`protocol.py`, pure) and negotiation (`negotiate.py`) are separate from the hub's rules
(`methods.py`); `connections.py` holds open connections whatever their transport, `transports.py` the
WebSocket, long-polling and Server-Sent Events ones, and `routes.py` composes them on Starlette (no
SignalR server library exists for Python).
"""
