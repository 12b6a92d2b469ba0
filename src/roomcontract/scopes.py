"""Token scopes: the room server's (what each lets a token do, and the list of all of them), and the
operator API's two (`operator:read`, `operator:write`), which share the tokens document."""

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

OperatorScope = Literal["operator:read", "operator:write"]

OPERATOR_READ: Final[OperatorScope] = "operator:read"
"""Read the operator's API: status, rooms and their specs, history, runs, audit, events, MCP status."""
OPERATOR_WRITE: Final[OperatorScope] = "operator:write"
"""Apply, restore, reconcile, stop managing, load MCP providers; implies `operator:read`."""
