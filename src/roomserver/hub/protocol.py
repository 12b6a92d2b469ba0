"""The SignalR JSON hub protocol, version 1: record framing, the handshake, and the messages (pure, no I/O).

Every message is one JSON object followed by the record separator 0x1E; one WebSocket message may carry
several. `split_records` cuts a received text into records (refusing one past the size limit),
`parse_handshake` and `parse_message` read them, and the `*_frame` functions write the server's side:
completions, invocations (client events), pings and close messages. Output is compact JSON with non-ASCII
written raw, as ASP.NET Core's JSON hub protocol writes it.
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from typing import Any, Final

RS: Final = "\x1e"
PROTOCOL: Final = "json"
VERSION: Final = 1
MAX_MESSAGE_BYTES: Final = 32 * 1024
"""The largest message a client may send (ASP.NET Core's `MaximumReceiveMessageSize` default)."""
TOO_LARGE: Final = f"The maximum message size of {MAX_MESSAGE_BYTES}B was exceeded."


class MessageType(enum.IntEnum):
    INVOCATION = 1
    STREAM_ITEM = 2
    COMPLETION = 3
    STREAM_INVOCATION = 4
    CANCEL_INVOCATION = 5
    PING = 6
    CLOSE = 7


class ProtocolError(ValueError):
    """The peer broke the protocol: the connection is closed with this text as the close message's error."""


@dataclass(frozen=True)
class Invocation:
    """A client's call of a hub method; `invocation_id` None is fire-and-forget (no completion)."""

    target: str
    arguments: list[Any]
    invocation_id: str | None


@dataclass(frozen=True)
class Other:
    """Any other client message: ping, close, a completion, a stream item, a cancel, a stream invocation."""

    type: MessageType
    invocation_id: str | None = None


def _dumps(document: Any) -> str:
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False)


def split_records(text: str) -> list[str]:
    """The records of one received WebSocket text message (a missing final separator is a protocol error:
    SignalR clients always end a message with one)."""
    if len(text) > MAX_MESSAGE_BYTES or len(text.encode()) > MAX_MESSAGE_BYTES:
        raise ProtocolError(TOO_LARGE)
    if not text.endswith(RS):
        raise ProtocolError("Message is incomplete: a record does not end with the 0x1E separator.")
    return text.split(RS)[:-1]


def _object(record: str) -> dict[str, Any]:
    try:
        document = json.loads(record)
    except (json.JSONDecodeError, RecursionError):
        raise ProtocolError("Error reading JSON.") from None
    if not isinstance(document, dict):
        raise ProtocolError("Unexpected JSON Token Type. Expected a JSON Object.")
    return document


def parse_handshake(record: str) -> str | None:
    """The handshake request: None when accepted, else the error the server answers before closing."""
    document = _object(record)
    protocol, version = document.get("protocol"), document.get("version")
    if not isinstance(protocol, str) or not isinstance(version, int) or isinstance(version, bool):
        return "Handshake request must carry 'protocol' (string) and 'version' (integer)."
    if protocol != PROTOCOL:
        return f"The protocol '{protocol}' is not supported."
    if version > VERSION:
        return f"The server does not support version {version} of the '{protocol}' protocol."
    return None


def parse_message(record: str) -> Invocation | Other:
    """One client message; an unknown type or a malformed invocation is a ProtocolError."""
    document = _object(record)
    kind = document.get("type")
    if not isinstance(kind, int) or isinstance(kind, bool) or kind not in MessageType._value2member_map_:
        raise ProtocolError(f"Unknown message type: {kind!r}.")
    message_type = MessageType(kind)
    invocation_id = document.get("invocationId")
    if invocation_id is not None and not isinstance(invocation_id, str):
        raise ProtocolError("Expected 'invocationId' to be of type String.")
    if message_type is not MessageType.INVOCATION:
        return Other(message_type, invocation_id)
    target, arguments = document.get("target"), document.get("arguments", [])
    if not isinstance(target, str) or not target:
        raise ProtocolError("Missing required property 'target'.")
    if not isinstance(arguments, list):
        raise ProtocolError("Expected 'arguments' to be of type Array.")
    if document.get("streamIds"):
        raise ProtocolError("Client streams are not supported by this hub.")
    return Invocation(target, arguments, invocation_id)


def handshake_frame(error: str | None = None) -> str:
    return _dumps({} if error is None else {"error": error}) + RS


def completion_frame(invocation_id: str, *, result: Any = None, has_result: bool = False) -> str:
    """A successful completion; a void method's carries no `result` key at all (as .NET sends it)."""
    document: dict[str, Any] = {"type": MessageType.COMPLETION, "invocationId": invocation_id}
    if has_result:
        document["result"] = result
    return _dumps(document) + RS


def error_frame(invocation_id: str, error: str) -> str:
    return _dumps({"type": MessageType.COMPLETION, "invocationId": invocation_id, "error": error}) + RS


def invocation_frame(target: str, argument: Any) -> str:
    """A client event (`event`, `message`) with its one argument, fire-and-forget as the server sends it."""
    return _dumps({"type": MessageType.INVOCATION, "target": target, "arguments": [argument]}) + RS


PING_FRAME: Final = _dumps({"type": MessageType.PING}) + RS


def close_frame(error: str | None = None, *, allow_reconnect: bool = False) -> str:
    document: dict[str, Any] = {"type": MessageType.CLOSE}
    if error is not None:
        document["error"] = error
    if allow_reconnect:
        document["allowReconnect"] = True
    return _dumps(document) + RS


# --- the error texts of ASP.NET Core's hub dispatcher (reference roomserver.md §3.3) ----------------------


_WEB_ESCAPES: Final = re.compile(r"\\\\|\\u[0-9a-f]{4}|['<>&+`]")


def _web_escape(found: re.Match[str]) -> str:
    text = found.group()
    if text == "\\\\":
        return text
    if text.startswith("\\u"):
        return text.upper().replace("\\U", "\\u")
    return f"\\u{ord(text):04X}"


def hub_exception_text(method: str, body: dict[str, Any]) -> str:
    """A HubException as .NET forwards it: the dispatcher's prefix, then the JSON the hub threw, written
    with the reference's Web encoder (non-ASCII and HTML-sensitive characters escaped as `\\uXXXX`)."""
    inner = _WEB_ESCAPES.sub(_web_escape, json.dumps(body, separators=(",", ":"), ensure_ascii=True))
    return f"An unexpected error occurred invoking '{method}' on the server. HubException: {inner}"


def unexpected_error_text(method: str) -> str:
    """Any other failure inside a hub method (the detail stays in the server log)."""
    return f"An unexpected error occurred invoking '{method}' on the server."


def binding_error_text(method: str) -> str:
    """Wrong argument count or types (.NET does not send the detail)."""
    return f"Failed to invoke '{method}' due to an error on the server."


def unknown_method_text(method: str) -> str:
    return f"Failed to invoke '{method}' due to an error on the server. HubException: Method does not exist."
