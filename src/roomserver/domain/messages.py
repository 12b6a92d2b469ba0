"""Hub messages (the reference's MessageModel): reading one from a client, payload rules by type, and who may
command or direct-message whom. Pure: the hub (`roomserver.hub.methods`) applies these to live sessions.

Reference: roomserver.md §3.1 (shape and defaults), §3.4 (payload rules and texts), §3.5 (routing and
permissions). Fixes of the reference (docs/compatibility.md): `allow_commands_from` also gates commands on
a direct channel, `none` denies every sender, event kinds may carry digits and `_`, an artifact message's
`manifest.version` may be the server's integer, and a client-supplied `roomId` must be the room's.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from roomserver.domain.entities import Entity
from roomserver.errors import RoomServerError, bad_request

MESSAGE_TYPES: Final = ("chat", "command", "event", "artifact")
EVENT_KIND: Final = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A ULID: 48 bits of milliseconds then 80 random bits, 26 Crockford base-32 characters."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def forbidden(message: str) -> RoomServerError:
    return RoomServerError(403, message, code="PERM_DENIED")


@dataclass(frozen=True)
class Message:
    """One message as the hub routes and delivers it (`to_wire` is the client event's argument)."""

    id: str
    room_id: str
    channel: str
    sender: str | None
    to: str | None
    type: str
    payload: Any
    ts: str
    correlation_id: str | None

    @property
    def direct_target(self) -> str | None:
        """The entity of a direct channel (`@E-x`), `""` for a bare `@`, None for a room message."""
        return self.channel[1:] if self.channel.startswith("@") else None

    @property
    def is_command(self) -> bool:
        return self.type.lower() == "command"

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "roomId": self.room_id,
            "channel": self.channel,
            "from": self.sender,
            "to": self.to,
            "type": self.type,
            "payload": self.payload,
            "ts": self.ts,
            "correlationId": self.correlation_id,
        }


def _optional_string(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    if value is not None and not isinstance(value, str):
        raise bad_request("INVALID_MESSAGE", f"message.{key} must be a string")
    return value


def read_message(raw: Any, *, room_id: str, now: str) -> Message:
    """A client's MessageModel: keys matched case-insensitively, the reference's defaults (new ULID id,
    channel `room`, type `chat`), `ts` the server's; then its payload checked by type (§3.4)."""
    if not isinstance(raw, dict):
        raise bad_request("INVALID_MESSAGE", "message must be a JSON object")
    fields = {key.lower(): value for key, value in raw.items()}
    claimed_room = _optional_string(fields, "roomid")
    if claimed_room is not None and claimed_room != room_id:
        raise forbidden("cannot publish to different room")
    message = Message(
        id=_optional_string(fields, "id") or new_ulid(),
        room_id=room_id,
        channel=_optional_string(fields, "channel") or "room",
        sender=_optional_string(fields, "from"),
        to=_optional_string(fields, "to"),
        type=_optional_string(fields, "type") or "chat",
        payload=fields.get("payload"),
        ts=now,
        correlation_id=_optional_string(fields, "correlationid"),
    )
    check_payload(message.type, message.payload)
    return message


def _payload_object(payload: Any, label: str, code: str) -> dict[str, Any]:
    if payload is None:
        raise bad_request(code, f"{label} payload is required")
    if not isinstance(payload, dict):
        raise bad_request(code, f"{label} payload must be a JSON object")
    return payload


def _required_string(payload: dict[str, Any], key: str, label: str, code: str) -> str:
    if key not in payload:
        raise bad_request(code, f"{label} payload must include '{key}' field")
    value = payload[key]
    if not isinstance(value, str):
        raise bad_request(code, f"{label} payload '{key}' must be a string")
    if not value.strip():
        raise bad_request(code, f"{label} payload '{key}' must be a non-empty string")
    return value


def _check_manifest(payload: dict[str, Any]) -> None:
    code = "INVALID_ARTIFACT_PAYLOAD"
    manifest = payload.get("manifest")
    if not isinstance(manifest, dict):
        raise bad_request(code, "Artifact payload must include 'manifest' object")
    for key in ("name", "sha256"):
        value = manifest.get(key)
        if not isinstance(value, str) or not value.strip():
            raise bad_request(code, f"Artifact payload 'manifest.{key}' must be a non-empty string")
    version = manifest.get("version")
    number = isinstance(version, int) and not isinstance(version, bool) and version > 0
    if not number and not (isinstance(version, str) and version.strip()):
        raise bad_request(
            code, "Artifact payload 'manifest.version' must be a positive integer or a non-empty string"
        )


def check_payload(message_type: str, payload: Any) -> None:
    """The reference's payload rules by (case-insensitive) type, with its codes and texts."""
    kind = message_type.lower()
    if kind == "chat":
        _required_string(
            _payload_object(payload, "Chat", "INVALID_CHAT_PAYLOAD"), "text", "Chat", "INVALID_CHAT_PAYLOAD"
        )
    elif kind == "command":
        code = "INVALID_COMMAND_PAYLOAD"
        _required_string(_payload_object(payload, "Command", code), "target", "Command", code)
    elif kind == "event":
        code = "INVALID_EVENT_PAYLOAD"
        event_kind = _required_string(_payload_object(payload, "Event", code), "kind", "Event", code)
        if not EVENT_KIND.fullmatch(event_kind):
            raise bad_request(
                code,
                "Event payload 'kind' must be in SCREAMING_CASE format (e.g., ENTITY.JOIN, ROOM.STATE)",
            )
    elif kind == "artifact":
        _check_manifest(_payload_object(payload, "Artifact", "INVALID_ARTIFACT_PAYLOAD"))
    else:
        raise bad_request(
            "INVALID_MESSAGE_TYPE",
            f"message.type must be one of: {', '.join(MESSAGE_TYPES)} (got: {message_type})",
        )


def command_target(message: Message) -> str:
    """The entity a command is for: `payload.target` (validated non-blank by `check_payload`)."""
    target: str = message.payload["target"]
    return target


def may_command(sender: Entity, sender_user: str | None, target: Entity) -> bool:
    """The target's `policy.allow_commands_from`: any, orchestrator (the sender's kind), owner (the
    sender's user owns the target), none (nobody)."""
    rule = target.policy.allow_commands_from
    if rule == "any":
        return True
    if rule == "orchestrator":
        return sender.kind == "orchestrator"
    if rule == "owner":
        return target.owner_user_id is not None and target.owner_user_id == sender_user
    return False


def may_direct_message(sender_user: str | None, target: Entity) -> bool:
    """Public and team entities take direct messages from anyone in the room; owner-visible ones only
    from their owner's user."""
    if target.visibility in ("public", "team"):
        return True
    return target.owner_user_id is not None and target.owner_user_id == sender_user
