"""The hub's methods and rules: Join, Leave, SendToRoom, ListEntities, ListTools, CallTool.

Argument order, results, codes and texts are the reference hub's (roomserver.md §3.2–3.5); errors are
raised as `RoomServerError` (the reference's ErrorFactory JSON) or `ToolError` (its MCP-shaped JSON), and
`dispatch` turns them into the dispatcher's error strings. The reference's hub holes (§10) are fixed here:

- membership: a room an operator manages admits only entities it declared (`ENTITY_NOT_DECLARED`), and a
  declared entity must join with its declared kind and owner (`ENTITY_MISMATCH`); it then speaks with its
  declared spec. A room no operator manages is open, as in the reference;
- identity: the user is the token's name (the reference trusted `X-User-Id`, which only insecure dev
  mode reads), and a token that names an entity joins as that entity only; a second connection of an
  entity is allowed for the same user only (`ENTITY_ALREADY_CONNECTED` otherwise), and presence counts
  its sessions;
- a connection joining another room leaves the first (ENTITY.LEAVE); ENTITY.JOIN is sent for every
  first session of an entity, also the room's first;
- `allow_commands_from` gates commands on direct channels too; `ListEntities` needs a session in the room;
  the message's `roomId`, when given, must be the room's;
- tools (`roomserver.providers`): a room sees its own providers' tools, a hidden tool is not callable,
  `rateLimit` is enforced, and every call has a timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from roomserver.domain import events as ev
from roomserver.domain import messages as msg
from roomserver.domain.entities import Entity, make_entity
from roomserver.domain.events import PendingEvent
from roomserver.domain.identifiers import check_room_id
from roomserver.domain.mcp import ToolError
from roomserver.domain.sessions import CloseSession, Session
from roomserver.domain.timestamps import now_iso
from roomserver.errors import RoomServerError, bad_request
from roomserver.hub import protocol
from roomserver.server import RoomServer
from roomserver.storage import actors, repository

log = logging.getLogger("roomserver.hub")


class BindingError(Exception):
    """The arguments do not fit the method (count or JSON types): .NET's "Failed to invoke" error."""


class UnknownMethod(Exception):
    """No hub method has the invoked name."""


@dataclass(frozen=True)
class Caller:
    """The connection a method runs for."""

    connection_id: str
    user_id: str | None
    close: CloseSession
    entity: str | None = None
    """The one entity the connection's token may join as (tokens document `entity`), None for any."""


Send = Callable[[list[str], str], None]
Delivered = Callable[[int], Awaitable[None]]
Handler = Callable[["HubMethods", Caller, list[Any]], Awaitable[Any]]


def _string(value: Any, name: str, code: str) -> str:
    """A `string` parameter: JSON null binds, then is refused as missing (a 400 HubException with `code`
    naming the parameter, where the reference's ArgumentException gave only the generic error)."""
    if value is not None and not isinstance(value, str):
        raise BindingError
    if value is None or not value.strip():
        raise bad_request(code, f"{name} is required")
    return value


def _object(value: Any, name: str, code: str) -> dict[str, Any]:
    if value is not None and not isinstance(value, dict):
        raise BindingError
    if value is None:
        raise bad_request(code, f"{name} is required")
    return value


def _session_required(session: Session | None) -> Session:
    if session is None:
        raise RoomServerError(401, "session not found", code="AUTH_REQUIRED")
    return session


def _text_list(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BindingError
    return value


def read_entity(raw: dict[str, Any]) -> Entity:
    """An EntitySpec argument: keys case-insensitive (`displayName`, `ownerUserId`; snake_case `policy.*`),
    validated by the roster's rules (`make_entity`) with the hub's codes."""
    fields = {key.lower(): value for key, value in raw.items()}
    policy_raw = fields.get("policy") or {}
    if not isinstance(policy_raw, dict):
        raise BindingError
    policy = {key.lower(): value for key, value in policy_raw.items()}
    entity_id, kind = fields.get("id"), fields.get("kind")
    optional = {name: fields.get(name) for name in ("displayname", "visibility", "owneruserid")}
    if any(v is not None and not isinstance(v, str) for v in (entity_id, kind, *optional.values())):
        raise BindingError
    commands_from, sandbox = policy.get("allow_commands_from"), policy.get("sandbox_mode", False)
    if (commands_from is not None and not isinstance(commands_from, str)) or not isinstance(sandbox, bool):
        raise BindingError
    if not entity_id or not entity_id.strip():
        raise bad_request("INVALID_ENTITY_SPEC", "entity.id is required")
    if not kind or not kind.strip():
        raise bad_request("INVALID_ENTITY_SPEC", "entity.kind is required")
    return make_entity(
        entity_id,
        kind,
        display_name=optional["displayname"],
        visibility=optional["visibility"],
        owner_user_id=optional["owneruserid"],
        capabilities=_text_list(fields.get("capabilities")),
        allow_commands_from=commands_from,
        sandbox_mode=sandbox,
        env_whitelist=_text_list(policy.get("env_whitelist")),
        scopes=_text_list(policy.get("scopes")),
    )


class HubMethods:
    """The methods, over the server's storage and live sessions; `send` delivers a frame to connections,
    `delivered(seq)` returns once a stored event went out to its room."""

    def __init__(self, server: RoomServer, send: Send, delivered: Delivered):
        self.server = server
        self.sessions = server.sessions
        self.send = send
        self.delivered = delivered

    async def _store(self, room_id: str, pending: list[PendingEvent], *, by: str) -> None:
        """Log the events of entity `by` (their actor) and wait until they went out to the room."""
        with actors.acting(by):
            stored = await self.server.db.run(repository.append_events, room_id, pending)
        await self.delivered(stored[-1].seq)

    # --- presence -----------------------------------------------------------------------------------------

    async def join(self, caller: Caller, room_id: str, raw: dict[str, Any]) -> list[dict[str, Any]]:
        check_room_id(room_id)
        entity = read_entity(raw)
        if caller.entity is not None and entity.id != caller.entity:
            raise msg.forbidden(f"the token may join as {caller.entity} only")
        if entity.visibility == "owner":
            if caller.user_id is None:
                raise RoomServerError(403, "owner visibility requires authentication", code="AUTH_REQUIRED")
            if entity.owner_user_id != caller.user_id:
                raise msg.forbidden("owner mismatch")
        declared, closed = await self.server.db.run(repository.admission, room_id, entity.id)
        if declared is not None:
            if (declared.kind, declared.owner_user_id) != (entity.kind, entity.owner_user_id):
                raise RoomServerError(
                    409,
                    f"entity {entity.id} is declared in {room_id} as kind {declared.kind} with owner "
                    f"{declared.owner_user_id}; it must join as declared",
                    code="ENTITY_MISMATCH",
                )
            entity = declared
        elif closed:
            raise RoomServerError(
                403,
                f"entity {entity.id} is not declared in {room_id}, whose operator keeps its roster",
                code="ENTITY_NOT_DECLARED",
            )
        current = self.sessions.of_connection(caller.connection_id)
        if current is not None and (current.room_id, current.entity.id) == (room_id, entity.id):
            return self._roster(room_id)
        if current is not None:
            await self._leave(current)
        held = self.sessions.entity(room_id, entity.id)
        if held is not None and held.user_id != caller.user_id:
            raise RoomServerError(
                409,
                f"entity {entity.id} is already connected to {room_id} by another user",
                code="ENTITY_ALREADY_CONNECTED",
            )
        session = Session(caller.connection_id, room_id, entity, caller.user_id, declared is not None)
        if self.sessions.add(session, caller.close):
            try:
                await self._presence(
                    room_id, PendingEvent(ev.ENTITY_JOIN, {"entity": entity.to_wire()}), True, by=entity.id
                )
            except BaseException:
                self.sessions.remove(caller.connection_id)
                raise
        return self._roster(room_id)

    async def leave(self, caller: Caller, room_id: str, entity_id: str) -> None:
        session = _session_required(self.sessions.of_connection(caller.connection_id))
        if (session.room_id, session.entity.id) != (room_id, entity_id):
            raise msg.forbidden("cannot leave on behalf of another entity")
        await self._leave(session)

    async def disconnected(self, connection_id: str) -> None:
        """The connection ended: its session leaves (the leave is published when it was the entity's last)."""
        session = self.sessions.of_connection(connection_id)
        if session is not None:
            await self._leave(session)

    async def _leave(self, session: Session) -> None:
        removed = self.sessions.remove(session.connection_id)
        if removed is not None and removed[1]:
            entity_id = session.entity.id
            await self._presence(
                session.room_id, PendingEvent(ev.ENTITY_LEAVE, {"entityId": entity_id}), False, by=entity_id
            )

    async def _presence(self, room_id: str, event: PendingEvent, joined: bool, *, by: str) -> None:
        live = self.sessions.entities(room_id)
        with actors.acting(by):
            stored = await self.server.db.run(
                repository.record_presence, room_id, event, live=live, joined=joined
            )
        await self.delivered(stored[-1].seq)

    def _roster(self, room_id: str) -> list[dict[str, Any]]:
        return [e.to_wire() for e in self.sessions.entities(room_id)]

    async def list_entities(self, caller: Caller, room_id: str) -> list[dict[str, Any]]:
        self._session_in(caller, room_id, "cannot list entities for different room")
        return self._roster(room_id)

    def _session_in(self, caller: Caller, room_id: str, refusal: str) -> Session:
        session = _session_required(self.sessions.of_connection(caller.connection_id))
        if session.room_id != room_id:
            raise msg.forbidden(refusal)
        return session

    # --- messages -----------------------------------------------------------------------------------------

    async def send_to_room(self, caller: Caller, room_id: str, raw: dict[str, Any]) -> None:
        session = self._session_in(caller, room_id, "cannot publish to different room")
        message = msg.read_message(raw, room_id=room_id, now=now_iso())
        if message.sender != session.entity.id:
            raise msg.forbidden("message sender mismatch")
        direct = message.direct_target
        if direct is not None:
            self._direct(session, message, direct)
            return
        if message.is_command:
            target = self.sessions.entity(room_id, msg.command_target(message))
            if target is None:
                raise RoomServerError(404, "command target not connected", code="TARGET_NOT_FOUND")
            self._check_command(session, target.entity)
        await self._store(room_id, [PendingEvent(ev.MESSAGE, message.to_wire())], by=session.entity.id)

    def _direct(self, session: Session, message: msg.Message, target_id: str) -> None:
        """A direct message goes to the sender's and the target's connections only, and is not logged."""
        if not target_id:
            raise bad_request("INVALID_TARGET", "direct messages require a target")
        target = self.sessions.entity(session.room_id, target_id)
        if target is None:
            raise RoomServerError(404, "target not connected", code="TARGET_NOT_FOUND")
        if not msg.may_direct_message(session.user_id, target.entity):
            raise msg.forbidden("not allowed to direct message target")
        if message.is_command:
            self._check_command(session, target.entity)
        receivers = {
            s.connection_id
            for entity_id in (session.entity.id, target_id)
            for s in self.sessions.holders(session.room_id, entity_id)
        }
        self.send(sorted(receivers), protocol.invocation_frame("message", message.to_wire()))

    def _check_command(self, session: Session, target: Entity) -> None:
        if not msg.may_command(session.entity, session.user_id, target):
            raise msg.forbidden("not allowed to command this target")

    # --- tools ------------------------------------------------------------------------------------------

    async def list_tools(self, caller: Caller, room_id: str) -> list[dict[str, Any]]:
        """The room's tool catalog (CatalogItemDto): the listed tools of its connected providers."""
        self._session_in(caller, room_id, "cannot list tools for different room")
        return self.server.providers.tools(room_id)

    async def call_tool(self, caller: Caller, room_id: str, tool: str, args: Any) -> dict[str, Any]:
        """Call a tool of the room's catalog (ToolCallResultDto), between RESOURCE.CALLED and
        RESOURCE.RESULT; a provider not connected is refused before RESOURCE.CALLED, at once."""
        session = self._session_in(caller, room_id, "cannot call tools in different room")
        providers = self.server.providers
        resolved = providers.prepare(room_id, tool, session.entity.id)
        about = {
            "toolId": resolved.tool_id,
            "serverId": resolved.provider.id,
            "key": f"{resolved.provider.id}:{resolved.tool_id}",
            "callerEntityId": session.entity.id,
        }
        caller_id = session.entity.id
        await self._store(room_id, [PendingEvent(ev.RESOURCE_CALLED, {**about, "args": args})], by=caller_id)
        try:
            output, raw = await providers.call(resolved, args)
        except ToolError as exc:
            failed = {**about, "ok": False, "error": exc.message, "code": exc.code}
            await self._store(room_id, [PendingEvent(ev.RESOURCE_RESULT, failed)], by=caller_id)
            raise
        await self._store(
            room_id, [PendingEvent(ev.RESOURCE_RESULT, {**about, "ok": True, "output": output})], by=caller_id
        )
        return {"ok": True, "rawOutput": raw, "error": None, "code": None}

    # --- the table ----------------------------------------------------------------------------------------


ROOM: Final = ("roomId", "INVALID_ROOM_ID")


async def _join(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    return await hub.join(caller, _string(args[0], *ROOM), _object(args[1], "entity", "INVALID_ENTITY_SPEC"))


async def _leave(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    return await hub.leave(caller, _string(args[0], *ROOM), _string(args[1], "entityId", "INVALID_ENTITY_ID"))


async def _send_to_room(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    return await hub.send_to_room(
        caller, _string(args[0], *ROOM), _object(args[1], "message", "INVALID_MESSAGE")
    )


async def _list_entities(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    return await hub.list_entities(caller, _string(args[0], *ROOM))


async def _list_tools(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    return await hub.list_tools(caller, _string(args[0], *ROOM))


async def _call_tool(hub: HubMethods, caller: Caller, args: list[Any]) -> Any:
    room_id = _string(args[0], *ROOM)
    return await hub.call_tool(caller, room_id, _string(args[1], "toolIdOrKey", "INVALID_TOOL"), args[2])


@dataclass(frozen=True)
class Method:
    handler: Handler
    arity: int
    returns: bool


METHODS: Final[dict[str, Method]] = {
    "join": Method(_join, 2, True),
    "leave": Method(_leave, 2, False),
    "sendtoroom": Method(_send_to_room, 2, False),
    "listentities": Method(_list_entities, 1, True),
    "listtools": Method(_list_tools, 1, True),
    "calltool": Method(_call_tool, 3, True),
}
"""By lower-case name: hub method names match case-insensitively, as in ASP.NET Core."""


async def dispatch(hub: HubMethods, caller: Caller, invocation: protocol.Invocation) -> str | None:
    """Run one invocation; the completion frame to send (None for a fire-and-forget invocation)."""
    name = invocation.target
    method = METHODS.get(name.lower())
    try:
        if method is None:
            raise UnknownMethod
        if len(invocation.arguments) != method.arity:
            raise BindingError
        result = await method.handler(hub, caller, invocation.arguments)
    except UnknownMethod:
        error = protocol.unknown_method_text(name)
    except BindingError:
        error = protocol.binding_error_text(name)
    except (RoomServerError, ToolError) as exc:
        error = protocol.hub_exception_text(name, exc.body())
    except Exception:
        log.exception("hub method %s failed", name)
        error = protocol.unexpected_error_text(name)
    else:
        if invocation.invocation_id is None:
            return None
        return protocol.completion_frame(invocation.invocation_id, result=result, has_result=method.returns)
    if invocation.invocation_id is None:
        return None
    return protocol.error_frame(invocation.invocation_id, error)
