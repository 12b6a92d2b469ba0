"""HTTP routes: operator endpoints, the reference's artifact routes, events (SSE), MCP status, health."""
