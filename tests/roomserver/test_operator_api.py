"""Operator endpoints over HTTP: room state, join/update/kick, policies, whoami, input errors, OpenAPI."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomserver.api.schemas import EntityOut, PoliciesOut, RoomStateOut
from roomserver.domain.entities import Entity
from roomserver.domain.sessions import Session

ROOM = "room-ai-lab-01"
AGENT: dict[str, Any] = {
    "entityId": "E-agent-1",
    "kind": "agent",
    "displayName": "Research Agent",
    "visibility": "team",
    "ownerUserId": None,
    "capabilities": ["read_artifacts"],
    "policy": {
        "allow_commands_from": "orchestrator",
        "sandbox_mode": False,
        "env_whitelist": [],
        "scopes": [],
    },
}


async def _state(client: httpx.AsyncClient, room: str = ROOM) -> dict[str, Any]:
    answer = await client.get(f"/room/{room}/state")
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    RoomStateOut.model_validate(body)
    return body


async def test_undeclared_room_has_an_empty_init_state(client: httpx.AsyncClient) -> None:
    assert await _state(client, "room-abc123") == {
        "roomId": "room-abc123",
        "status": "init",
        "revision": 0,
        "entities": [],
        "artifacts": [],
        "policies": {
            "dmVisibilityDefault": "team",
            "allowResourceCreation": False,
            "maxArtifactsPerEntity": 100,
        },
        "resources": [],
        "manager": None,
    }


async def test_join_declares_and_a_second_join_is_409(client: httpx.AsyncClient) -> None:
    first = await client.post(f"/room/{ROOM}/join", json={**AGENT, "roomId": ROOM})
    assert first.status_code == 201
    roster = [EntityOut.model_validate(e) for e in first.json()]
    assert [e.id for e in roster] == ["E-agent-1"]
    assert roster[0].connected is False
    again = await client.post(f"/room/{ROOM}/join", json={**AGENT, "displayName": "Other"})
    assert again.status_code == 409
    assert again.json()["code"] == "ENTITY_EXISTS"
    state = await _state(client)
    assert state["status"] == "active"
    assert state["entities"][0]["displayName"] == "Research Agent"
    assert state["entities"][0]["policy"]["allow_commands_from"] == "orchestrator"


async def test_entities_are_sorted_and_kick_ends_the_room(client: httpx.AsyncClient) -> None:
    for entity_id in ("E-zed", "E-abc", "E-mid"):
        assert (
            await client.post(f"/room/{ROOM}/join", json={**AGENT, "entityId": entity_id})
        ).status_code == 201
    assert [e["id"] for e in (await _state(client))["entities"]] == ["E-abc", "E-mid", "E-zed"]
    for entity_id in ("E-zed", "E-abc", "E-mid"):
        assert (await client.delete(f"/room/{ROOM}/entities/{entity_id}")).status_code == 204
    absent = await client.delete(f"/room/{ROOM}/entities/E-abc")
    assert absent.status_code == 404
    assert absent.json()["code"] == "ENTITY_NOT_FOUND"
    state = await _state(client)
    assert state["entities"] == []
    assert state["status"] == "ended"


async def test_put_entity_upserts_updates_and_is_quiet_when_unchanged(client: httpx.AsyncClient) -> None:
    body = {k: v for k, v in AGENT.items() if k != "entityId"}
    created = await client.put(f"/room/{ROOM}/entities/E-agent-1", json=body)
    assert created.status_code == 201
    revision = (await _state(client))["revision"]
    same = await client.put(f"/room/{ROOM}/entities/E-agent-1", json=body)
    assert same.status_code == 200
    assert (await _state(client))["revision"] == revision
    changed = await client.put(
        f"/room/{ROOM}/entities/E-agent-1", json={**body, "capabilities": ["text.generate"]}
    )
    assert changed.status_code == 200
    assert changed.json()["capabilities"] == ["text.generate"]
    state = await _state(client)
    assert state["revision"] == revision + 1
    assert state["entities"][0]["capabilities"] == ["text.generate"]


@pytest.mark.parametrize(
    ("method", "path", "body", "code", "words"),
    [
        ("POST", "/room/x/join", AGENT, "INVALID_ROOM_ID", "roomId must match"),
        ("POST", f"/room/{ROOM}/join", {**AGENT, "entityId": "agent-1"}, "INVALID_ENTITY_ID", "entity.id"),
        ("POST", f"/room/{ROOM}/join", {**AGENT, "kind": "robot"}, "INVALID_ENTITY_KIND", "entity.kind"),
        (
            "POST",
            f"/room/{ROOM}/join",
            {**AGENT, "capabilities": ["X"]},
            "INVALID_CAPABILITY",
            "capability 'X'",
        ),
        (
            "POST",
            f"/room/{ROOM}/join",
            {**AGENT, "visibility": "owner"},
            "INVALID_ENTITY_SPEC",
            "ownerUserId",
        ),
        (
            "POST",
            f"/room/{ROOM}/join",
            {**AGENT, "roomId": "room-other-room"},
            "INVALID_ENTITY_SPEC",
            "roomId",
        ),
        ("POST", f"/room/{ROOM}/join", {"kind": "agent"}, "INVALID_ENTITY_SPEC", "entityId is required"),
        ("POST", f"/room/{ROOM}/join", {**AGENT, "capabilities": "x"}, "INVALID_REQUEST", "capabilities"),
        ("POST", f"/room/{ROOM}/join", {**AGENT, "colour": "red"}, "INVALID_REQUEST", "colour"),
        (
            "POST",
            f"/room/{ROOM}/join",
            {**AGENT, "policy": {"sandbox_mode": "yes"}},
            "INVALID_REQUEST",
            "sandbox_mode",
        ),
        ("PUT", f"/room/{ROOM}/entities/E-other", AGENT, "INVALID_ENTITY_SPEC", "entityId in the body"),
        ("PUT", f"/room/{ROOM}/entities/bad", AGENT, "INVALID_ENTITY_ID", "entityId"),
        ("DELETE", f"/room/{ROOM}/entities/bad", None, "INVALID_ENTITY_ID", "entityId"),
        (
            "PUT",
            f"/rooms/{ROOM}/policies",
            {"dmVisibilityDefault": "all"},
            "INVALID_POLICIES",
            "dmVisibilityDefault",
        ),
        (
            "PUT",
            f"/rooms/{ROOM}/policies",
            {"maxArtifactsPerEntity": -1},
            "INVALID_POLICIES",
            "maxArtifactsPerEntity",
        ),
        (
            "PUT",
            f"/rooms/{ROOM}/policies",
            {"maxArtifactsPerEntity": True},
            "INVALID_REQUEST",
            "maxArtifactsPerEntity",
        ),
        (
            "PUT",
            f"/rooms/{ROOM}/policies",
            {"allowResourceCreation": "no"},
            "INVALID_REQUEST",
            "allowResource",
        ),
        ("PUT", f"/rooms/{ROOM}/policies", {"dmVisibility": "team"}, "INVALID_REQUEST", "dmVisibility"),
        ("GET", "/room/-bad-/state", None, "INVALID_ROOM_ID", "roomId"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, body: Any, code: str, words: str
) -> None:
    answer = await client.request(method, path, json=body)
    assert answer.status_code == 400
    error = answer.json()
    assert error["error"] == "BadRequest"
    assert error["code"] == code
    assert words in error["message"]
    assert (await _state(client))["entities"] == []


async def test_malformed_json_is_a_400(client: httpx.AsyncClient) -> None:
    answer = await client.post(
        f"/room/{ROOM}/join", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["code"] == "INVALID_REQUEST"


async def test_policies_default_update_and_event_only_on_change(client: httpx.AsyncClient) -> None:
    defaults = (await client.get(f"/rooms/{ROOM}/policies")).json()
    assert PoliciesOut.model_validate(defaults).maxArtifactsPerEntity == 100
    updated = await client.put(f"/rooms/{ROOM}/policies", json={"dmVisibilityDefault": "public"})
    assert updated.json() == {**defaults, "dmVisibilityDefault": "public"}
    revision = (await _state(client))["revision"]
    assert revision == 1
    again = await client.put(f"/rooms/{ROOM}/policies", json={"dmVisibilityDefault": "public"})
    assert again.status_code == 200
    assert (await _state(client))["revision"] == revision
    assert (await _state(client))["policies"]["dmVisibilityDefault"] == "public"


async def test_unknown_routes_and_methods_answer_e1(client: httpx.AsyncClient) -> None:
    missing = await client.get("/rooms")
    assert missing.status_code == 404
    assert missing.json()["code"] == "ROUTE_NOT_FOUND"
    wrong = await client.patch(f"/room/{ROOM}/state")
    assert wrong.status_code == 405
    assert (wrong.json()["error"], wrong.json()["code"]) == ("MethodNotAllowed", "METHOD_NOT_ALLOWED")


async def test_reference_liveness_routes(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert (root.status_code, root.text) == (200, "RoomServer alive")
    health = await client.get("/health", headers={"Authorization": ""})
    assert (health.status_code, health.text, health.headers["content-type"]) == (
        200,
        "Healthy",
        "text/plain; charset=utf-8",
    )


async def test_openapi_describes_every_json_endpoint(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    for path, method in [
        ("/room/{roomId}/state", "get"),
        ("/room/{roomId}/join", "post"),
        ("/room/{roomId}/entities/{entityId}", "put"),
        ("/room/{roomId}/entities/{entityId}", "delete"),
        ("/rooms/{roomId}/artifacts", "post"),
        ("/rooms/{roomId}/artifacts", "get"),
        ("/rooms/{roomId}/entities/{entityId}/artifacts", "post"),
        ("/rooms/{roomId}/artifacts/{name}", "get"),
        ("/rooms/{roomId}/artifacts/{name}", "delete"),
        ("/rooms/{roomId}/artifacts/{name}/hash", "get"),
        ("/rooms/{roomId}/artifacts/{name}/versions", "get"),
        ("/rooms/{roomId}/artifacts/promote", "post"),
        ("/rooms/{roomId}/policies", "put"),
        ("/auth/whoami", "get"),
        ("/events", "get"),
        ("/status/mcp", "get"),
        ("/admin/mcp/status", "get"),
        ("/admin/mcp/load", "post"),
    ]:
        assert method in paths[path], (method, path)
    state = paths["/room/{roomId}/state"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert state["$ref"].endswith("/RoomStateOut")
    assert "multipart/form-data" in paths["/rooms/{roomId}/artifacts"]["post"]["requestBody"]["content"]
    assert "HTTPBearer" in spec["components"]["securitySchemes"]


def _session(entity_id: str) -> Session:
    """A live session as the hub binds one (tests/hub/ drive the real hub)."""
    return Session(f"connection-{entity_id}", ROOM, Entity(entity_id, "agent"), None, True)


async def _never_closed() -> None:
    raise AssertionError("not closed in this test")


async def test_a_live_session_shows_as_connected_and_is_closed_by_a_kick(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await client.post(f"/room/{ROOM}/join", json=AGENT)
    closed: list[str] = []

    async def close() -> None:
        closed.append("E-agent-1")

    app.state.roomserver.sessions.add(_session("E-agent-1"), close)
    assert (await _state(client))["entities"][0]["connected"] is True
    assert (await client.delete(f"/room/{ROOM}/entities/E-agent-1")).status_code == 204
    assert closed == ["E-agent-1"]
    assert app.state.roomserver.sessions.is_connected(ROOM, "E-agent-1") is False


async def test_state_read_is_conditional_on_its_etag(app: FastAPI, client: httpx.AsyncClient) -> None:
    await client.post(f"/room/{ROOM}/join", json=AGENT)
    first = await client.get(f"/room/{ROOM}/state")
    etag = first.headers["ETag"]
    assert etag.startswith(f'"{first.json()["revision"]}-')
    assert etag.endswith('"')
    unchanged = await client.get(f"/room/{ROOM}/state", headers={"If-None-Match": f'"other", W/{etag}'})
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged.headers["ETag"] == etag
    # Presence is not a room event (the revision stays) but it changes the body, so the ETag too.
    app.state.roomserver.sessions.add(_session("E-agent-1"), _never_closed)
    connected = await client.get(f"/room/{ROOM}/state", headers={"If-None-Match": etag})
    assert connected.status_code == 200
    assert connected.json()["entities"][0]["connected"] is True
    assert connected.json()["revision"] == first.json()["revision"]
    assert connected.headers["ETag"] != etag
    await client.put(f"/room/{ROOM}/entities/E-agent-1", json={**AGENT, "capabilities": ["text.generate"]})
    changed = await client.get(f"/room/{ROOM}/state", headers={"If-None-Match": connected.headers["ETag"]})
    assert changed.status_code == 200
    assert changed.json()["revision"] == first.json()["revision"] + 1
