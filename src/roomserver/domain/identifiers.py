"""Identifier rules shared by every route (docs/contract.md "Identifiers"): one regex and checker each."""

from __future__ import annotations

import re
from typing import Final

from roomserver.errors import artifact_error, bad_request

ROOM_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,63}$")
ENTITY_ID: Final = re.compile(r"^E-[A-Za-z0-9_-]{2,64}$")
CAPABILITY: Final = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
ARTIFACT_NAME: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
WORKSPACE_LABEL: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
TAG: Final = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")
SHA256_HEX: Final = re.compile(r"^[0-9a-f]{64}$")
RESERVED_NAMES: Final = frozenset({"manifest.json"})


def check_room_id(room_id: str) -> str:
    if not ROOM_ID.fullmatch(room_id):
        raise bad_request("INVALID_ROOM_ID", f"roomId must match pattern: {ROOM_ID.pattern}")
    return room_id


def check_entity_id(entity_id: str, *, field: str = "entityId") -> str:
    if not ENTITY_ID.fullmatch(entity_id):
        raise bad_request("INVALID_ENTITY_ID", f"{field} must match pattern: {ENTITY_ID.pattern}")
    return entity_id


def check_artifact_name(name: str) -> str:
    """The reference's InvalidArtifactName errors, plus reserved names and `.tmp` (reference §10.8)."""
    if not name.strip():
        raise artifact_error(400, "InvalidArtifactName", "Name is required")
    if ".." in name or "/" in name or "\\" in name:
        raise artifact_error(400, "InvalidArtifactName", "Name contains invalid path tokens")
    if name.lower() in RESERVED_NAMES or name.lower().endswith(".tmp"):
        raise artifact_error(400, "InvalidArtifactName", f"Name '{name}' is reserved")
    if not ARTIFACT_NAME.fullmatch(name):
        raise artifact_error(400, "InvalidArtifactName", f"Name must match pattern: {ARTIFACT_NAME.pattern}")
    return name
