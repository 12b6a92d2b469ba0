"""What the operator and the room server must agree on, in one place that imports neither.

The two packages meet only over HTTP and WebSocket; this small package holds the rules both sides of
that wire check the same way: identifier patterns, token scopes, the tokens document, and which hosts
count as loopback. It imports nothing from `roomoperator` or `roomserver` (an import-linter contract
says so), and nothing here does I/O except reading a tokens document the caller names.
"""
