"""Identifier rules of every route: the shared contract's patterns (`roomcontract.identifiers`), compiled,
and a checker each that answers the reference's error codes."""

from __future__ import annotations

import re
from typing import Final

from roomcontract import identifiers as patterns
from roomserver.errors import artifact_error, bad_request

ROOM_ID: Final = re.compile(patterns.ROOM_ID)
ENTITY_ID: Final = re.compile(patterns.ENTITY_ID)
CAPABILITY: Final = re.compile(patterns.CAPABILITY)
ARTIFACT_NAME: Final = re.compile(patterns.ARTIFACT_NAME)
WORKSPACE_LABEL: Final = re.compile(patterns.WORKSPACE_LABEL)
TAG: Final = re.compile(patterns.TAG)
SHA256_HEX: Final = re.compile(patterns.SHA256_HEX)
RESERVED_NAMES: Final = patterns.RESERVED_ARTIFACT_NAMES


def check_room_id(room_id: str) -> str:
    if not ROOM_ID.fullmatch(room_id):
        raise bad_request("INVALID_ROOM_ID", f"roomId must match pattern: {patterns.ROOM_ID_RULE}")
    if len(room_id) > patterns.ROOM_ID_MAX_LENGTH:
        raise bad_request(
            "INVALID_ROOM_ID", f"roomId must be at most {patterns.ROOM_ID_MAX_LENGTH} characters"
        )
    return room_id


def check_entity_id(entity_id: str, *, field: str = "entityId") -> str:
    if not ENTITY_ID.fullmatch(entity_id):
        raise bad_request("INVALID_ENTITY_ID", f"{field} must match pattern: {patterns.ENTITY_ID_RULE}")
    return entity_id


def check_artifact_name(name: str) -> str:
    """The reference's InvalidArtifactName errors, plus reserved names and `.tmp`."""
    if not name.strip():
        raise artifact_error(400, "InvalidArtifactName", "Name is required")
    if ".." in name or "/" in name or "\\" in name:
        raise artifact_error(400, "InvalidArtifactName", "Name contains invalid path tokens")
    if name.lower() in RESERVED_NAMES or name.lower().endswith(".tmp"):
        raise artifact_error(400, "InvalidArtifactName", f"Name '{name}' is reserved")
    if not ARTIFACT_NAME.fullmatch(name):
        raise artifact_error(400, "InvalidArtifactName", f"Name must match pattern: {ARTIFACT_NAME.pattern}")
    return name
