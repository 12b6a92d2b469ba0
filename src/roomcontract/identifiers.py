"""Identifier patterns of rooms, entities, artifacts and labels (`docs/contract.md`, "Identifiers").

Regular-expression sources, so that each side can use them where it needs them: the spec's JSON Schema
and validation in the operator, the routes and the storage in the room server.
"""

from __future__ import annotations

from typing import Final

ROOM_ID: Final = r"^room-[A-Za-z0-9_-]{6,}$"
"""The reference room server's rule (`ValidationHelper.cs:9`): its clients see the same refusals."""
ROOM_ID_RULE: Final = "room-[A-Za-z0-9_-]{6,}"
"""The rule as the reference's error text spells it: `roomId must match pattern: room-[A-Za-z0-9_-]{6,}`."""
ROOM_ID_MAX_LENGTH: Final = 64
"""Longest room id either side accepts. The reference had no bound; ids are store keys and path parts."""
ENTITY_ID: Final = r"^E-[A-Za-z0-9_-]{2,64}$"
ENTITY_ID_RULE: Final = "E-[A-Za-z0-9_-]{2,64}"
"""As the reference's error text spells it: `entity.id must match pattern: E-[A-Za-z0-9_-]{2,64}`."""
CAPABILITY: Final = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$"
ARTIFACT_NAME: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
WORKSPACE_LABEL: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
TAG: Final = r"^[A-Za-z0-9._:/-]{1,64}$"
SHA256_HEX: Final = r"^[0-9a-f]{64}$"
PROVIDER_URL: Final = r"^((wss?|https?)://\S+|stdio:[A-Za-z0-9][A-Za-z0-9._-]{0,63})$"
"""An MCP provider URL: `ws(s)://` (the reference's dialect), `http(s)://` (standard MCP, streamable HTTP),
`stdio:<name>` (standard MCP over stdio: a command the room server's settings name `<name>`)."""
PROVIDER_URL_RULE: Final = "a ws://, wss://, http:// or https:// URL or stdio:<name>"
RESERVED_ARTIFACT_NAMES: Final = frozenset({"manifest.json"})
"""Artifact names the room server keeps for itself."""
