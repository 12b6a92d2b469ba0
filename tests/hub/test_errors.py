"""Every hub error code, with the reference's texts and its error transport (roomserver.md §3.2–3.5)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from tests.hub.client import HubClient, HubError, chat, command, entity, hub_client
from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle, running_roomserver

PREFIX = "An unexpected error occurred invoking '{}' on the server. HubException: "


async def _error(client: HubClient, method: str, *args: Any) -> HubError:
    with pytest.raises(HubError) as caught:
        await client.invoke(method, *args)
    return caught.value


async def test_the_error_transport_is_the_dispatchers_prefix_then_the_error_factory_json(
    server: RoomServerHandle,
) -> None:
    async with hub_client(server.url, server.token) as alice:
        error = await _error(alice, "join", "bad-room", entity("E-alice"))
    assert error.text == PREFIX.format("join") + (
        '{"error":"BadRequest","code":"INVALID_ROOM_ID",'
        '"message":"roomId must match pattern: room-[A-Za-z0-9_-]{6,}"}'
    )


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        ({"kind": "agent"}, "INVALID_ENTITY_SPEC", "entity.id is required"),
        ({"id": "E-alice"}, "INVALID_ENTITY_SPEC", "entity.kind is required"),
        (
            {"id": "Alice", "kind": "agent"},
            "INVALID_ENTITY_ID",
            "entity.id must match pattern: E-[A-Za-z0-9_-]{2,64}",
        ),
        (
            {"id": "E-alice", "kind": "robot"},
            "INVALID_ENTITY_KIND",
            "entity.kind must be one of: human, agent, npc, orchestrator",
        ),
        (
            {"id": "E-alice", "kind": "agent", "capabilities": ["Text"]},
            "INVALID_CAPABILITY",
            "capability 'Text' must match pattern: ^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$",
        ),
        (
            {"id": "E-alice", "kind": "agent", "visibility": "owner"},
            "INVALID_ENTITY_SPEC",
            "owner visibility requires ownerUserId",
        ),
        (
            {"id": "E-alice", "kind": "agent", "policy": {"allow_commands_from": "nobody"}},
            "INVALID_ENTITY_SPEC",
            "entity.policy.allow_commands_from must be one of: any, orchestrator, owner, none",
        ),
    ],
)
async def test_join_validates_the_entity_spec(
    server: RoomServerHandle, spec: dict[str, Any], code: str, message: str
) -> None:
    async with hub_client(server.url, server.token) as client:
        error = await _error(client, "Join", ROOM, spec)
    assert error.body == {"error": "BadRequest", "code": code, "message": message}


async def test_owner_visibility_is_the_tokens_user(server: RoomServerHandle) -> None:
    owned = entity("E-alice", visibility="owner", ownerUserId="someone-else")
    async with hub_client(server.url, server.token) as client:
        error = await _error(client, "Join", ROOM, owned)
        assert error.body == {"error": "Forbidden", "code": "PERM_DENIED", "message": "owner mismatch"}
        joined = await client.invoke("Join", ROOM, {**owned, "ownerUserId": "test"})  # the token's name
    assert joined[0]["ownerUserId"] == "test"


async def test_owner_visibility_without_a_user_is_refused_in_insecure_mode(tmp_path: Any) -> None:
    async with running_roomserver(tmp_path / "data", insecure=True) as server:
        owned = entity("E-alice", visibility="owner", ownerUserId="U-1")
        async with hub_client(server.url, None) as anonymous:
            error = await _error(anonymous, "Join", ROOM, owned)
            assert error.body == {
                "error": "Forbidden",
                "code": "AUTH_REQUIRED",
                "message": "owner visibility requires authentication",
            }
        async with hub_client(server.url, None, headers={"X-User-Id": "U-1"}) as owner:
            assert (await owner.invoke("Join", ROOM, owned))[0]["id"] == "E-alice"


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("Leave", [ROOM, "E-alice"]),
        ("SendToRoom", [ROOM, chat("E-alice", "hi")]),
        ("ListEntities", [ROOM]),
        ("ListTools", [ROOM]),
        ("CallTool", [ROOM, "echo", {}]),
    ],
)
async def test_methods_that_need_a_session_say_session_not_found(
    server: RoomServerHandle, method: str, args: list[Any]
) -> None:
    async with hub_client(server.url, server.token) as client:
        error = await _error(client, method, *args)
    assert error.body == {"error": "Unauthorized", "code": "AUTH_REQUIRED", "message": "session not found"}


@pytest.mark.parametrize(
    ("method", "args", "message"),
    [
        ("Leave", ["room-other-1", "E-alice"], "cannot leave on behalf of another entity"),
        ("Leave", [ROOM, "E-bob"], "cannot leave on behalf of another entity"),
        ("SendToRoom", ["room-other-1", chat("E-alice", "hi")], "cannot publish to different room"),
        ("SendToRoom", [ROOM, chat("E-bob", "hi")], "message sender mismatch"),
        (
            "SendToRoom",
            [ROOM, chat("E-alice", "hi", roomId="room-other-1")],
            "cannot publish to different room",
        ),
        ("ListEntities", ["room-other-1"], "cannot list entities for different room"),
        ("ListTools", ["room-other-1"], "cannot list tools for different room"),
        ("CallTool", ["room-other-1", "echo", {}], "cannot call tools in different room"),
    ],
)
async def test_a_session_acts_only_in_its_room_and_as_its_entity(
    server: RoomServerHandle, method: str, args: list[Any], message: str
) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        error = await _error(alice, method, *args)
    assert error.body == {"error": "Forbidden", "code": "PERM_DENIED", "message": message}


@pytest.mark.parametrize(
    ("message", "code", "text"),
    [
        ({"from": "E-alice", "type": "chat"}, "INVALID_CHAT_PAYLOAD", "Chat payload is required"),
        ({"from": "E-alice", "payload": "hi"}, "INVALID_CHAT_PAYLOAD", "Chat payload must be a JSON object"),
        (
            {"from": "E-alice", "payload": {}},
            "INVALID_CHAT_PAYLOAD",
            "Chat payload must include 'text' field",
        ),
        (
            {"from": "E-alice", "payload": {"text": " "}},
            "INVALID_CHAT_PAYLOAD",
            "Chat payload 'text' must be a non-empty string",
        ),
        (
            {"from": "E-alice", "type": "command", "payload": {}},
            "INVALID_COMMAND_PAYLOAD",
            "Command payload must include 'target' field",
        ),
        (
            {"from": "E-alice", "type": "command", "payload": {"target": 7}},
            "INVALID_COMMAND_PAYLOAD",
            "Command payload 'target' must be a string",
        ),
        (
            {"from": "E-alice", "type": "event", "payload": {"kind": "entity.join"}},
            "INVALID_EVENT_PAYLOAD",
            "Event payload 'kind' must be in SCREAMING_CASE format (e.g., ENTITY.JOIN, ROOM.STATE)",
        ),
        (
            {"from": "E-alice", "type": "artifact", "payload": {"manifest": {"name": "a", "version": 1}}},
            "INVALID_ARTIFACT_PAYLOAD",
            "Artifact payload 'manifest.sha256' must be a non-empty string",
        ),
        (
            {"from": "E-alice", "type": "poke", "payload": {}},
            "INVALID_MESSAGE_TYPE",
            "message.type must be one of: chat, command, event, artifact (got: poke)",
        ),
        (
            {"from": "E-alice", "channel": "@", "payload": {"text": "x"}},
            "INVALID_TARGET",
            "direct messages require a target",
        ),
    ],
)
async def test_payloads_are_validated_by_type(
    server: RoomServerHandle, message: dict[str, Any], code: str, text: str
) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        error = await _error(alice, "SendToRoom", ROOM, message)
    assert error.body == {"error": "BadRequest", "code": code, "message": text}


async def test_event_kinds_with_digits_and_artifact_messages_with_the_servers_integer_version_pass(
    server: RoomServerHandle,
) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        await alice.invoke(
            "SendToRoom", ROOM, {"from": "E-alice", "type": "event", "payload": {"kind": "TASK_2.DONE"}}
        )
        manifest = {"name": "a.md", "version": 3, "sha256": "ab" * 32}
        await alice.invoke(
            "SendToRoom", ROOM, {"from": "E-alice", "type": "artifact", "payload": {"manifest": manifest}}
        )
        kinds = [(await alice.messages.get())["type"] for _ in range(2)]
    assert kinds == ["event", "artifact"]


async def test_targets_must_be_connected(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as alice:
        await alice.invoke("Join", ROOM, entity("E-alice"))
        direct = await _error(alice, "SendToRoom", ROOM, chat("E-alice", "hi", channel="@E-nobody"))
        commanded = await _error(alice, "SendToRoom", ROOM, command("E-alice", "E-nobody"))
    assert direct.body == {"error": "NotFound", "code": "TARGET_NOT_FOUND", "message": "target not connected"}
    assert commanded.body == {
        "error": "NotFound",
        "code": "TARGET_NOT_FOUND",
        "message": "command target not connected",
    }


@pytest.mark.parametrize(
    ("target", "sender_kind", "allowed"),
    [
        ({"policy": {"allow_commands_from": "any"}}, "human", True),
        ({"policy": {"allow_commands_from": "orchestrator"}}, "human", False),
        ({"policy": {"allow_commands_from": "orchestrator"}}, "orchestrator", True),
        ({"policy": {"allow_commands_from": "owner"}, "ownerUserId": "admin"}, "human", False),
        ({"policy": {"allow_commands_from": "owner"}, "ownerUserId": "test"}, "human", True),
        ({"policy": {"allow_commands_from": "none"}}, "orchestrator", False),
    ],
)
@pytest.mark.parametrize("channel", ["room", "@E-target"])
async def test_allow_commands_from_gates_commands_on_every_channel(
    server: RoomServerHandle, target: dict[str, Any], sender_kind: str, allowed: bool, channel: str
) -> None:
    async with (
        hub_client(server.url, server.admin_token) as held,
        hub_client(server.url, server.token) as sender,
    ):
        await held.invoke("Join", ROOM, entity("E-target", **target))
        await sender.invoke("Join", ROOM, entity("E-sender", sender_kind))
        message = command("E-sender", "E-target", channel=channel)
        if allowed:
            await sender.invoke("SendToRoom", ROOM, message)
            assert (await held.messages.get())["payload"]["target"] == "E-target"
        else:
            error = await _error(sender, "SendToRoom", ROOM, message)
            assert error.text == PREFIX.format("SendToRoom") + (
                '{"error":"Forbidden","code":"PERM_DENIED","message":"not allowed to command this target"}'
            )


async def test_direct_messages_to_an_owner_visible_entity_need_its_owner(server: RoomServerHandle) -> None:
    async with (
        hub_client(server.url, server.admin_token) as owner,
        hub_client(server.url, server.token) as other,
    ):
        await owner.invoke("Join", ROOM, entity("E-owned", visibility="owner", ownerUserId="admin"))
        await other.invoke("Join", ROOM, entity("E-other"))
        error = await _error(other, "SendToRoom", ROOM, chat("E-other", "psst", channel="@E-owned"))
    assert error.body == {
        "error": "Forbidden",
        "code": "PERM_DENIED",
        "message": "not allowed to direct message target",
    }


async def test_a_second_connection_of_an_entity_is_the_same_users_only(server: RoomServerHandle) -> None:
    async with (
        hub_client(server.url, server.token) as first,
        hub_client(server.url, server.token) as second,
        hub_client(server.url, server.admin_token) as stranger,
    ):
        await first.invoke("Join", ROOM, entity("E-alice"))
        assert [e["id"] for e in await second.invoke("Join", ROOM, entity("E-alice"))] == ["E-alice"]
        error = await _error(stranger, "Join", ROOM, entity("E-alice"))
    assert error.body == {
        "error": "Conflict",
        "code": "ENTITY_ALREADY_CONNECTED",
        "message": "entity E-alice is already connected to room-test-1 by another user",
    }


async def test_a_token_that_names_an_entity_joins_as_that_entity_only(tmp_path: Any) -> None:
    token = "bound-token-0123456789"
    document = {"tokens": [{"name": "app", "token": token, "scopes": ["room:read"], "entity": "E-agent-1"}]}
    async with (
        running_roomserver(tmp_path / "data", tokens=SecretStr(json.dumps(document))) as server,
        hub_client(server.url, token) as client,
    ):
        error = await _error(client, "Join", ROOM, entity("E-agent-2"))
        assert error.body == {
            "error": "Forbidden",
            "code": "PERM_DENIED",
            "message": "the token may join as E-agent-1 only",
        }
        assert (await client.invoke("Join", ROOM, entity("E-agent-1")))[0]["id"] == "E-agent-1"


async def test_a_managed_room_admits_declared_entities_only_and_as_declared(
    server: RoomServerHandle, rest: httpx.AsyncClient
) -> None:
    declared = {"entityId": "E-agent-1", "kind": "agent", "policy": {"allow_commands_from": "orchestrator"}}
    assert (await rest.post(f"/room/{ROOM}/join", json=declared)).status_code == 201
    assert (await rest.put(f"/rooms/{ROOM}/manager", json={"name": "operator"})).status_code == 200
    async with hub_client(server.url, server.token) as client:
        refused = await _error(client, "Join", ROOM, entity("E-stranger"))
        mismatch = await _error(client, "Join", ROOM, entity("E-agent-1", "human"))
        joined = await client.invoke("Join", ROOM, entity("E-agent-1", policy={"allow_commands_from": "any"}))
    assert refused.body == {
        "error": "Forbidden",
        "code": "ENTITY_NOT_DECLARED",
        "message": "entity E-stranger is not declared in room-test-1, whose operator keeps its roster",
    }
    assert mismatch.body is not None
    assert mismatch.body["code"] == "ENTITY_MISMATCH"
    assert joined[0]["policy"]["allow_commands_from"] == "orchestrator"  # the declaration wins


async def test_dispatcher_errors_name_the_method_as_invoked(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        unknown = await _error(client, "Shout", ROOM)
        arity = await _error(client, "Join", ROOM)
        types = await _error(client, "JOIN", 7, entity("E-alice"))
        null_room = await _error(client, "join", None, entity("E-alice"))
        blank_entity_id = await _error(client, "Leave", ROOM, " ")
        null_message = await _error(client, "SendToRoom", ROOM, None)
    assert (
        unknown.text
        == "Failed to invoke 'Shout' due to an error on the server. HubException: Method does not exist."
    )
    assert arity.text == "Failed to invoke 'Join' due to an error on the server."
    assert types.text == "Failed to invoke 'JOIN' due to an error on the server."
    # A null or blank argument is named (the reference's ArgumentException gave the generic error only).
    assert null_room.text.startswith(PREFIX.format("join"))
    named = [(e.body or {}).get("code") for e in (null_room, blank_entity_id, null_message)]
    assert named == ["INVALID_ROOM_ID", "INVALID_ENTITY_ID", "INVALID_MESSAGE"]
    assert [(e.body or {}).get("message") for e in (null_room, blank_entity_id, null_message)] == [
        "roomId is required",
        "entityId is required",
        "message is required",
    ]


async def test_the_inner_json_escapes_as_the_reference_web_encoder(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        error = await _error(client, "Join", ROOM, entity("E-alice", capabilities=["l'été"]))
    assert "capability \\u0027l\\u0027\\u00E9t\\u00E9\\u0027 must match" in error.text
    assert error.body is not None
    assert error.body["message"].startswith("capability 'l'été' must match")


async def test_tools_follow_the_reference_with_no_provider_connected(server: RoomServerHandle) -> None:
    async with hub_client(server.url, server.token) as client:
        await client.invoke("Join", ROOM, entity("E-alice"))
        assert await client.invoke("ListTools", ROOM) == []
        missing = await _error(client, "CallTool", ROOM, "web.search", {"q": "x"})
    assert missing.body == {
        "error": "NotFound",
        "code": "TOOL_NOT_FOUND",
        "message": "Tool not found: web.search",
    }
