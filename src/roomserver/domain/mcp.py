"""MCP providers and their tools: the rules behind `/status/mcp`, `/admin/mcp/load`, `ListTools`, `CallTool`.

Pure (no I/O, no clock: every transition takes `now_ms`); `roomserver.providers` runs the connections.

- A provider's kind follows its URL (`kind_of`): `ws://`/`wss://` is the reference's JSON-RPC dialect,
  `http://`/`https://` a standard MCP server over streamable HTTP, `stdio:<name>` a standard MCP server
  the server starts from the command its settings name `<name>` (a load never carries a command line).
- Its state machine is `idle -> connecting -> connected | error`, and `error -> connecting` again after
  a capped exponential backoff (`Backoff`); `attempts` counts every connection attempt since the load,
  and `nextRetryAt` is the next one's time while it waits (the reference's status shape).
- A provider belongs to one room (loaded with `roomId`) or to every room (loaded without); a room sees
  its own providers and the global ones, its own shadowing a global one of the same id.
- The catalog (`Catalog`) lists the tools of connected providers only, minus hidden ones
  (`visibility: entity`); a hidden tool is not callable either, `allowedEntities` other than
  public/team denies calls (as the reference), and `rateLimit.perMinute` is enforced (`Provider.admit`).
- Tool failures are `ToolError`s in the reference's MCP-shaped JSON (`{"error": CODE, "message", "code"}`).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, Final

from roomserver.errors import RoomServerError

RESOURCE_TYPE: Final = "mcp-tool"
STDIO_SCHEME: Final = "stdio:"
DEFAULT_VISIBILITY: Final = "room"
DEFAULT_ALLOWED: Final = "public"
DEFAULT_PER_MINUTE: Final = 60
HIDDEN: Final = "entity"
CALLABLE: Final = frozenset({"public", "team"})
RATE_WINDOW_MS: Final = 60_000


class ProviderState(StrEnum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ERROR = "error"


class ProviderKind(StrEnum):
    """How the server talks to a provider (chosen by the URL's scheme)."""

    REFERENCE = "reference"  # ws://, wss://: the reference room server's JSON-RPC dialect
    MCP_HTTP = "mcp-http"  # http://, https://: standard MCP, streamable HTTP
    MCP_STDIO = "mcp-stdio"  # stdio:<name>: standard MCP, a configured command's stdin/stdout


def kind_of(url: str) -> ProviderKind:
    """The provider kind a URL names (the URL was validated by the load body or the settings)."""
    if url.startswith(("ws://", "wss://")):
        return ProviderKind.REFERENCE
    if url.startswith(STDIO_SCHEME):
        return ProviderKind.MCP_STDIO
    return ProviderKind.MCP_HTTP


class ToolErrorCode(StrEnum):
    """The `error` of an MCP-shaped tool failure."""

    RATE_LIMITED = "RATE_LIMITED"
    MCP_UNAVAILABLE = "MCP_UNAVAILABLE"
    MCP_ERROR = "MCP_ERROR"
    RESULT_TOO_LARGE = "RESULT_TOO_LARGE"  # extension: a result over the server's cap


class RpcCode(IntEnum):
    """The numeric `code` of an MCP-shaped failure the server makes itself (the reference's values)."""

    RATE_LIMITED = -32001
    UNAVAILABLE = -32002
    TOO_LARGE = -32003  # extension
    TOOL_FAILED = -32000  # a standard MCP result with `isError: true` (it carries no JSON-RPC code)


class ToolError(Exception):
    """A tool failure in the reference's MCP shape: `{"error": CODE, "message": ..., "code": <int>}`."""

    def __init__(self, error: ToolErrorCode, message: str, code: int):
        super().__init__(message)
        self.error, self.message, self.code = error, message, int(code)

    def body(self) -> dict[str, Any]:
        return {"error": str(self.error), "message": self.message, "code": self.code}


NOT_CONNECTED: Final = "MCP server is not connected"
UNREACHABLE: Final = "Failed to communicate with MCP server"


def unavailable(message: str = NOT_CONNECTED) -> ToolError:
    return ToolError(ToolErrorCode.MCP_UNAVAILABLE, message, RpcCode.UNAVAILABLE)


@dataclass(frozen=True)
class Backoff:
    """Waits between failed connection attempts: `initial * 2**(failures-1)` seconds, at most `maximum`."""

    initial: float
    maximum: float

    def delay(self, failures: int) -> float:
        exponent = min(max(failures - 1, 0), 62)
        return min(self.maximum, self.initial * float(2**exponent))


@dataclass(frozen=True)
class ToolPolicy:
    visibility: str
    allowed_entities: str
    scopes: tuple[str, ...]
    per_minute: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "visibility": self.visibility,
            "allowedEntities": self.allowed_entities,
            "scopes": list(self.scopes),
            "rateLimit": {"perMinute": self.per_minute},
        }


@dataclass(frozen=True)
class ToolSpec:
    """A tool as its provider describes it; `policy` is the provider's raw policy object, if any."""

    id: str
    title: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None


def _policy(spec: ToolSpec, provider_visibility: str) -> ToolPolicy:
    """The reference's merge: the tool's own value, else the provider's visibility or the default."""
    raw = spec.policy or {}
    visibility = raw.get("visibility")
    allowed = raw.get("allowedEntities")
    scopes = raw.get("scopes")
    rate = raw.get("rateLimit")
    per_minute = rate.get("perMinute") if isinstance(rate, dict) else None
    return ToolPolicy(
        visibility=visibility if isinstance(visibility, str) else provider_visibility or DEFAULT_VISIBILITY,
        allowed_entities=allowed if isinstance(allowed, str) else DEFAULT_ALLOWED,
        scopes=tuple(s for s in scopes if isinstance(s, str)) if isinstance(scopes, list) else (),
        per_minute=per_minute
        if isinstance(per_minute, int) and not isinstance(per_minute, bool) and per_minute > 0
        else DEFAULT_PER_MINUTE,
    )


@dataclass(frozen=True)
class Tool:
    """One catalog entry (the reference's CatalogItemDto, plus the tool's `inputSchema`)."""

    server_id: str
    tool_id: str
    title: str | None
    description: str | None
    input_schema: dict[str, Any] | None
    policy: ToolPolicy

    @property
    def key(self) -> str:
        return f"{self.server_id}:{self.tool_id}"

    @property
    def hidden(self) -> bool:
        return self.policy.visibility.lower() == HIDDEN

    def to_wire(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "toolId": self.tool_id,
            "serverId": self.server_id,
            "title": self.title,
            "description": self.description,
            "inputSchema": self.input_schema,
            "policy": self.policy.to_wire(),
        }


@dataclass
class Provider:
    """One loaded provider and where its state machine is."""

    id: str
    url: str
    visibility: str
    room_id: str | None = None
    state: ProviderState = ProviderState.IDLE
    attempts: int = 0
    failures: int = 0
    """Consecutive failed attempts (the backoff's exponent); 0 once connected."""
    last_change_at: int = 0
    last_error: str | None = None
    next_retry_at: int | None = None
    tools: tuple[Tool, ...] = ()
    """The tools of its current connection, or of its last one while it is not connected."""
    calls: dict[tuple[str, str], deque[int]] = field(default_factory=dict, repr=False)
    """Call times in the last minute by (tool id, entity id): the `rateLimit.perMinute` window."""

    @property
    def kind(self) -> ProviderKind:
        return kind_of(self.url)

    @property
    def connected(self) -> bool:
        return self.state is ProviderState.CONNECTED

    def attempt(self, now_ms: int) -> None:
        self.state, self.attempts, self.next_retry_at = ProviderState.CONNECTING, self.attempts + 1, None
        self.last_change_at = now_ms

    def connect(self, tools: list[ToolSpec], now_ms: int) -> None:
        self.state, self.failures = ProviderState.CONNECTED, 0
        self.last_error, self.next_retry_at = None, None
        self.relist(tools)
        self.last_change_at = now_ms

    def relist(self, tools: list[ToolSpec]) -> None:
        """The provider's tools as it lists them now (at connection, and at each liveness probe)."""
        self.tools = tuple(
            Tool(self.id, t.id, t.title, t.description, t.input_schema, _policy(t, self.visibility))
            for t in tools
        )

    def fail(self, error: str, backoff: Backoff, now_ms: int) -> float:
        """The attempt failed or the connection was lost: state `error`; the seconds to the next attempt."""
        self.failures += 1
        delay = backoff.delay(self.failures)
        self.state, self.last_error = ProviderState.ERROR, error
        self.next_retry_at = now_ms + int(delay * 1000)
        self.last_change_at = now_ms
        return delay

    def admit(self, tool: Tool, entity_id: str, now_ms: int) -> bool:
        """At most `perMinute` calls of one tool by one entity in any 60 s (a sliding window)."""
        key = (tool.tool_id, entity_id)
        calls = self.calls.setdefault(key, deque())
        while calls and calls[0] <= now_ms - RATE_WINDOW_MS:
            calls.popleft()
        if len(calls) >= tool.policy.per_minute:
            return False
        calls.append(now_ms)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": str(self.state),
            "attempts": self.attempts,
            "lastChangeAt": self.last_change_at,
            "lastError": self.last_error,
            "nextRetryAt": self.next_retry_at,
        }

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.id,
            "type": RESOURCE_TYPE,
            "status": str(self.state),
            "config": {"endpoint": self.url},
        }


def visible_providers(providers: list[Provider], room_id: str | None) -> list[Provider]:
    """The providers a room uses: its own, and the global ones it has no own provider of the same id for.
    With `room_id` None: every provider."""
    if room_id is None:
        return list(providers)
    own = {p.id for p in providers if p.room_id == room_id}
    return [p for p in providers if p.room_id == room_id or (p.room_id is None and p.id not in own)]


@dataclass(frozen=True)
class Resolved:
    provider: Provider
    tool_id: str
    tool: Tool | None
    """None when the provider is named by key but is not connected (its tools are unknown)."""


def tool_not_found(reference: str, detail: str = "") -> RoomServerError:
    return RoomServerError(404, f"Tool not found: {reference}{detail}", code="TOOL_NOT_FOUND")


def call_denied() -> RoomServerError:
    return RoomServerError(403, "You are not allowed to call this tool", code="PERM_DENIED")


def resolve(providers: list[Provider], reference: str) -> Resolved:
    """The reference's `ResourceCatalog.Resolve` over one room's providers: a value with `:` is an exact key
    `serverId:toolId`, otherwise a unique `toolId`. Raises TOOL_NOT_FOUND with the reason (unknown, or
    ambiguous with the candidate keys: the reference lost it)."""
    if ":" in reference:
        for provider in sorted(providers, key=lambda p: -len(p.id)):  # the longest id first: ids may hold ':'
            prefix = f"{provider.id}:"
            if not reference.startswith(prefix):
                continue
            tool_id = reference.removeprefix(prefix)
            tool = next((t for t in provider.tools if t.tool_id == tool_id), None)
            if tool is None and provider.connected:
                break
            return Resolved(provider, tool_id, tool)
        raise tool_not_found(reference)
    matches = [(p, t) for p in providers for t in p.tools if t.tool_id == reference]
    if len(matches) > 1:
        keys = ", ".join(sorted(t.key for _, t in matches))
        raise tool_not_found(reference, f" (ambiguous: {keys}; call it by key)")
    if not matches:
        raise tool_not_found(reference)
    provider, tool = matches[0]
    return Resolved(provider, tool.tool_id, tool)


def catalog(providers: list[Provider]) -> list[dict[str, Any]]:
    """`ListTools`: the listed tools of the connected providers (CatalogItemDto)."""
    return [t.to_wire() for p in providers if p.connected for t in p.tools if not t.hidden]


def may_call(tool: Tool) -> bool:
    """A hidden tool is not callable (the reference let one be called); owner or unknown: denied."""
    return not tool.hidden and tool.policy.allowed_entities.lower() in CALLABLE


def raw_output(result: Any, *, limit: int) -> str:
    """The result as the reference's `rawOutput` (JSON text), refused past `limit` UTF-8 bytes."""
    text = json.dumps(result, ensure_ascii=False, separators=(",", ":"))
    size = len(text.encode())
    if size > limit:
        raise ToolError(
            ToolErrorCode.RESULT_TOO_LARGE,
            f"tool result is {size} bytes, over the server's {limit}-byte limit",
            RpcCode.TOO_LARGE,
        )
    return text
