"""HTTP clients, all on aiohttp: the room server's REST API and event stream, and the operator's own API
(for the CLI)."""
