"""The provider supervisor: one asyncio task per loaded provider runs its state machine, and tool calls go
through it to the provider's live connection.

The rules (states, backoff, catalog, resolution, policy, rate limits) are `roomserver.domain.mcp`'s; this
module adds the clock, the connections (`reference.py`, `standard.py`) and the timeouts:

- `load` returns at once; a provider's task connects and lists its tools within
  `mcp_connect_timeout_seconds`, then lists them again every `mcp_health_seconds` (the liveness probe,
  within `mcp_call_timeout_seconds`); a failure or a lost connection waits the backoff and tries
  again, forever, until the provider is loaded again or the server closes;
- a call runs within `mcp_call_timeout_seconds`; a provider not connected answers `MCP_UNAVAILABLE` at
  once, so an offline provider never holds a hub call or the server;
- `close` cancels every task (connections closed, stdio processes ended) and waits for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from roomserver.domain.mcp import (
    STDIO_SCHEME,
    UNREACHABLE,
    Backoff,
    Provider,
    ProviderKind,
    ProviderState,
    Resolved,
    RpcCode,
    ToolError,
    ToolErrorCode,
    ToolSpec,
    call_denied,
    catalog,
    may_call,
    raw_output,
    resolve,
    unavailable,
    visible_providers,
)
from roomserver.providers.reference import open_reference
from roomserver.providers.standard import open_standard
from roomserver.settings import ServerSettings

log = logging.getLogger("roomserver.providers")

FRAME_OVERHEAD = 64 * 1024
"""Room for the JSON-RPC envelope around a result of `mcp_max_result_bytes` in one WebSocket frame."""


class Connection(Protocol):
    """What the supervisor needs of an open provider connection (both kinds have it)."""

    broken: asyncio.Event

    async def list_tools(self) -> list[ToolSpec]: ...

    async def call(self, tool_id: str, args: Any) -> Any: ...


def _now_ms() -> int:
    return int(time.time() * 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    text = str(exc) or type(exc).__name__
    if isinstance(exc, BaseExceptionGroup):
        text = "; ".join(_describe(e) for e in exc.exceptions)
    return text[:500]


@dataclass(frozen=True)
class ProviderConfig:
    """One provider to load: its id, URL (the kind follows the scheme) and default tool visibility."""

    id: str
    url: str
    visibility: str = "room"


@dataclass
class _Live:
    provider: Provider
    task: asyncio.Task[None] | None = None
    connection: Connection | None = None
    calls: set[asyncio.Task[Any]] = field(default_factory=set)
    stopped: bool = False
    """Set before the task is cancelled: a client library that turns the cancellation into an error of
    its own (the MCP SDK's task groups can) must not make the loop try again."""


class Providers:
    """The server's providers: registry, tasks and connections (one instance per server)."""

    def __init__(self, settings: ServerSettings):
        self._settings = settings
        self._backoff = Backoff(settings.mcp_retry_initial_seconds, settings.mcp_retry_max_seconds)
        self._commands: dict[str, list[str]] = dict(settings.mcp_commands)
        self._live: dict[tuple[str | None, str], _Live] = {}  # by (room id or None, provider id)
        self._retiring: set[asyncio.Task[None]] = set()
        self._closed = False

    # --- loading ------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Load the providers of the settings (`mcp_servers`, for every room)."""
        configs = []
        for server in self._settings.mcp_servers:
            if server.command is not None:
                self._commands[server.id] = server.command
                configs.append(ProviderConfig(server.id, f"{STDIO_SCHEME}{server.id}", server.visibility))
            elif server.url is not None:
                configs.append(ProviderConfig(server.id, server.url, server.visibility))
        if configs:
            self.load(configs)

    def unknown_command(self, url: str) -> str | None:
        """The command name of a `stdio:` URL that no setting names, else None."""
        if not url.startswith(STDIO_SCHEME):
            return None
        name = url.removeprefix(STDIO_SCHEME)
        return None if name in self._commands else name

    def load(self, configs: list[ProviderConfig], *, room_id: str | None = None) -> int:
        """Register providers (for one room, or every room) and start their tasks; returns at once.

        Loading a provider again with the same URL and visibility keeps it (a provider in `error` retries
        now); with a different one it is replaced: its connection closes and the new one starts `idle`."""
        for config in configs:
            key = (room_id, config.id)
            current = self._live.get(key)
            if current is not None:
                kept = current.provider
                if (kept.url, kept.visibility) == (config.url, config.visibility) and (
                    kept.state is not ProviderState.ERROR
                ):
                    continue
                self._retire(current)
            provider = Provider(config.id, config.url, config.visibility, room_id, last_change_at=_now_ms())
            live = self._live[key] = _Live(provider)
            if not self._closed:
                live.task = asyncio.create_task(self._run(live), name=f"mcp-provider {room_id}/{config.id}")
        return len(configs)

    def _retire(self, live: _Live) -> None:
        if live.task is None:
            return
        live.stopped = True
        live.task.cancel()
        self._retiring.add(live.task)
        live.task.add_done_callback(self._retiring.discard)

    # --- reading ------------------------------------------------------------------------------------------

    def _of_room(self, room_id: str | None) -> list[Provider]:
        return visible_providers([live.provider for live in self._live.values()], room_id)

    def _live_of(self, provider: Provider) -> _Live | None:
        live = self._live.get((provider.room_id, provider.id))
        return live if live is not None and live.provider is provider else None

    def statuses(self) -> list[dict[str, Any]]:
        return [live.provider.status() for live in self._live.values()]

    def resources(self, *, room_id: str | None = None) -> list[dict[str, Any]]:
        """The providers a room uses as room-state resources; without `room_id`, every provider."""
        return [p.resource() for p in self._of_room(room_id)]

    def tools(self, room_id: str) -> list[dict[str, Any]]:
        """`ListTools`: the room's listed tools of connected providers."""
        return catalog(self._of_room(room_id))

    # --- calling ------------------------------------------------------------------------------------------

    def prepare(self, room_id: str, reference: str, entity_id: str) -> Resolved:
        """Resolve a tool for a call and check it may be made now (policy, rate limit, connection);
        raises the hub's errors (TOOL_NOT_FOUND, PERM_DENIED, RATE_LIMITED, MCP_UNAVAILABLE)."""
        resolved = resolve(self._of_room(room_id), reference)
        if resolved.tool is not None and not may_call(resolved.tool):
            raise call_denied()
        live = self._live_of(resolved.provider)
        if live is None or live.connection is None or resolved.tool is None:
            raise unavailable()
        if not resolved.provider.admit(resolved.tool, entity_id, _now_ms()):
            raise ToolError(
                ToolErrorCode.RATE_LIMITED, "Rate limit exceeded for this tool", RpcCode.RATE_LIMITED
            )
        return resolved

    async def call(self, resolved: Resolved, args: Any) -> tuple[Any, str]:
        """Call a prepared tool; its result and `rawOutput` (the result's JSON text). Raises ToolError:
        `MCP_ERROR` from the provider, `MCP_UNAVAILABLE` when it is gone, does not answer in time or
        fails, `RESULT_TOO_LARGE`."""
        live = self._live_of(resolved.provider)
        connection = None if live is None else live.connection
        if live is None or connection is None:
            raise unavailable()
        timeout = self._settings.mcp_call_timeout_seconds
        task = asyncio.create_task(connection.call(resolved.tool_id, args))
        live.calls.add(task)  # cancelled with the provider's task
        task.add_done_callback(live.calls.discard)
        try:
            async with asyncio.timeout(timeout):
                result = await task
        except ToolError:
            raise
        except TimeoutError:
            task.cancel()
            raise unavailable(f"MCP server did not answer within {timeout:g} s") from None
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                task.cancel()
                raise
            raise unavailable(UNREACHABLE) from None  # the connection ended during the call
        except Exception as exc:
            log.warning("call of %s failed: %s", resolved.provider.id, _describe(exc))
            connection.broken.set()
            raise unavailable(UNREACHABLE) from exc
        return result, raw_output(result, limit=self._settings.mcp_max_result_bytes)

    # --- the state machine --------------------------------------------------------------------------------

    def _open(self, provider: Provider) -> contextlib.AbstractAsyncContextManager[Connection]:
        if provider.kind is ProviderKind.REFERENCE:
            max_bytes = self._settings.mcp_max_result_bytes + FRAME_OVERHEAD
            return open_reference(provider.url, max_bytes=max_bytes)
        if provider.kind is ProviderKind.MCP_STDIO:
            name = provider.url.removeprefix(STDIO_SCHEME)
            command = self._commands.get(name)
            if command is None:  # the load checked it; a provider of the settings always has one
                raise LookupError(f"no command is configured as {name!r} (mcp_commands)")
            return open_standard(command)
        return open_standard(provider.url)

    async def _run(self, live: _Live) -> None:
        provider = live.provider
        settings = self._settings
        while True:
            provider.attempt(_now_ms())
            try:
                async with contextlib.AsyncExitStack() as stack:
                    async with asyncio.timeout(settings.mcp_connect_timeout_seconds):
                        connection = await stack.enter_async_context(self._open(provider))
                        tools = await connection.list_tools()
                    provider.connect(tools, _now_ms())
                    live.connection = connection
                    try:
                        error = await self._watch(provider, connection)
                    finally:
                        live.connection = None
                        for call in live.calls:
                            call.cancel()
            except Exception as exc:  # every failure of one attempt: the backoff, then the next one
                if live.stopped:  # the cancellation came back as another error (see `_Live.stopped`)
                    return
                error = _describe(exc)
            delay = provider.fail(error, self._backoff, _now_ms())
            log.info("MCP provider %s: %s; next attempt in %.1f s", provider.id, error, delay)
            await asyncio.sleep(delay)

    async def _watch(self, provider: Provider, connection: Connection) -> str:
        """Wait while the connection lives, listing the tools again at each probe; the reason it ended."""
        settings = self._settings
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(settings.mcp_health_seconds):
                    await connection.broken.wait()
                return "connection lost"
            try:
                async with asyncio.timeout(settings.mcp_call_timeout_seconds):
                    provider.relist(await connection.list_tools())
            except ToolError as exc:
                return f"liveness probe failed: {exc.message}"

    # --- shutdown -----------------------------------------------------------------------------------------

    async def close(self) -> None:
        """Cancel every provider task and wait until each has closed its connection."""
        self._closed = True
        for live in self._live.values():
            live.stopped = True
        tasks = [live.task for live in self._live.values() if live.task is not None] + list(self._retiring)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._live.clear()
