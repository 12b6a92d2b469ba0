"""The room server's token scopes: what each lets a token do, and the list of all of them."""

from __future__ import annotations

from typing import Final, Literal

Scope = Literal[
    "room:read", "room:entities:write", "room:artifacts:write", "room:policies:write", "room:admin"
]

READ: Final[Scope] = "room:read"
"""Read room state, artifacts, events and MCP status."""
ENTITIES_WRITE: Final[Scope] = "room:entities:write"
"""Declare, update and remove entities."""
ARTIFACTS_WRITE: Final[Scope] = "room:artifacts:write"
"""Upload, promote and delete artifacts."""
POLICIES_WRITE: Final[Scope] = "room:policies:write"
"""Change room policies."""
ADMIN: Final[Scope] = "room:admin"
"""Load MCP providers and other administration."""

ALL_SCOPES: Final[tuple[Scope, ...]] = (READ, ENTITIES_WRITE, ARTIFACTS_WRITE, POLICIES_WRITE, ADMIN)
