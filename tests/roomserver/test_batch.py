"""`POST /room/{roomId}/batch`: each item validated, authorised and answered as its single endpoint, the
valid items applied in one transaction with the single endpoints' events; whole-request errors and caps."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomcontract.batch import MAX_BATCH_ITEMS
from roomserver.domain.entities import Entity
from roomserver.domain.sessions import Session
from tests.support.roomserver import RoomServerHandle, running_roomserver, upload_artifact

ROOM = "room-batch-test-01"


def _entity(entity_id: str, **extra: Any) -> dict[str, Any]:
    return {"entityId": entity_id, "kind": "agent", "capabilities": ["read_artifacts"], **extra}


async def _batch(client: httpx.AsyncClient, items: list[dict[str, Any]], room: str = ROOM) -> list[Any]:
    answer = await client.post(f"/room/{room}/batch", json={"items": items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["roomId"] == room
    assert [r["index"] for r in body["results"]] == list(range(len(items)))
    return list(body["results"])


async def test_whoami_announces_the_batch(client: httpx.AsyncClient) -> None:
    assert (await client.get("/auth/whoami")).json()["features"] == [
        "batch.v1",
        "fencing.v1",
        "events.actor.v1",
    ]


async def test_items_answer_as_their_single_endpoints_and_repeat_as_no_ops(client: httpx.AsyncClient) -> None:
    await upload_artifact(client, ROOM, "plan", b"the plan")
    items = [
        {"op": "putEntity", "entity": _entity("E-agent-1")},
        {"op": "putPolicies", "policies": {"maxArtifactsPerEntity": 7}},
        {"op": "putManager", "manager": {"name": "operator", "url": "http://127.0.0.1:8080"}},
        {"op": "promoteArtifact", "name": "plan"},
        {"op": "removeEntity", "entityId": "E-never"},
        {"op": "deleteArtifact", "name": "nothing"},
    ]
    first = await _batch(client, items)
    assert [(r["op"], r["status"]) for r in first] == [
        ("putEntity", 201),
        ("putPolicies", 200),
        ("putManager", 200),
        ("promoteArtifact", 201),
        ("removeEntity", 404),
        ("deleteArtifact", 404),
    ]
    single = (await client.put(f"/room/{ROOM}/entities/E-agent-1", json=_entity("E-agent-1"))).json()
    assert first[0]["body"] == single
    assert first[1]["body"] == (await client.get(f"/rooms/{ROOM}/policies")).json()
    assert first[2]["body"]["name"] == "operator"
    assert first[2]["body"]["membership"] == "closed"
    assert first[3]["body"]["manifest"]["promoted"] is True
    assert first[4]["error"]["code"] == "ENTITY_NOT_FOUND"
    assert first[5]["error"] == {"error": "ArtifactNotFound", "message": "Artifact not found"}
    revision = (await client.get(f"/room/{ROOM}/state")).json()["revision"]

    again = await _batch(client, items)  # idempotent: the same answers as the single endpoints', no event
    assert [r["status"] for r in again] == [200, 200, 200, 200, 404, 404]
    assert again[2]["body"]["since"] == first[2]["body"]["since"]
    assert (await client.get(f"/room/{ROOM}/state")).json()["revision"] == revision

    removal = await _batch(
        client, [{"op": "removeEntity", "entityId": "E-agent-1"}, {"op": "deleteArtifact", "name": "plan"}]
    )
    assert [(r["status"], "body" in r, "error" in r) for r in removal] == [(204, False, False)] * 2
    state = (await client.get(f"/room/{ROOM}/state")).json()
    assert state["entities"] == []
    assert state["artifacts"] == []
    assert state["status"] == "ended"


@pytest.mark.parametrize(
    ("item", "single"),
    [
        ({"op": "putEntity", "entity": {"entityId": "E-xray", "kind": "robot"}}, "INVALID_ENTITY_KIND"),
        ({"op": "putEntity", "entity": {"entityId": "E-xray"}}, "INVALID_REQUEST"),
        ({"op": "putEntity", "entity": _entity("E-xray", bogus=1)}, "INVALID_REQUEST"),
        ({"op": "putEntity", "entity": {"kind": "agent"}}, "INVALID_ENTITY_SPEC"),
        ({"op": "putEntity", "entity": _entity("E-xray", roomId="room-other-1")}, "INVALID_ENTITY_SPEC"),
        ({"op": "putEntity", "entity": _entity("E-xray", capabilities=["Bad Cap"])}, "INVALID_CAPABILITY"),
        ({"op": "putPolicies", "policies": {"dmVisibilityDefault": "everyone"}}, "INVALID_POLICIES"),
        ({"op": "putPolicies", "policies": {"maxArtifactsPerEntity": "7"}}, "INVALID_REQUEST"),
        ({"op": "putManager", "manager": {"name": ""}}, "INVALID_REQUEST"),
        ({"op": "putManager", "manager": {"name": "op", "membership": "half"}}, "INVALID_REQUEST"),
    ],
)
async def test_an_invalid_item_gets_its_single_endpoints_error_and_the_others_apply(
    client: httpx.AsyncClient, item: dict[str, Any], single: str | None
) -> None:
    results = await _batch(
        client,
        [
            {"op": "putEntity", "entity": _entity("E-before")},
            item,
            {"op": "putEntity", "entity": _entity("E-after")},
        ],
    )
    assert [results[0]["status"], results[2]["status"]] == [201, 201]
    assert results[1]["status"] == 400
    assert "body" not in results[1]
    # the same payload sent to its single endpoint answers the same error body
    payload = next(value for key, value in item.items() if key != "op")
    path = {
        "putEntity": f"/room/{ROOM}/join",
        "putPolicies": f"/rooms/{ROOM}/policies",
        "putManager": f"/rooms/{ROOM}/manager",
    }[item["op"]]
    method = "POST" if item["op"] == "putEntity" else "PUT"
    answer = await client.request(method, path, json=payload)
    assert answer.status_code == 400
    assert results[1]["error"] == answer.json()
    if single is not None:
        assert results[1]["error"]["code"] == single
    state = (await client.get(f"/room/{ROOM}/state")).json()
    assert [e["id"] for e in state["entities"]] == ["E-after", "E-before"]
    assert state["policies"]["dmVisibilityDefault"] == "team"


async def test_malformed_items_are_refused_one_by_one(client: httpx.AsyncClient) -> None:
    results = await _batch(
        client,
        [
            "not an object",
            {"op": "explode", "entity": {}},
            {"op": "removeEntity"},
            {"op": "removeEntity", "entityId": "E-xray", "extra": 1},
            {"op": "removeEntity", "entityId": 12},
            {"op": "removeEntity", "entityId": "not an id"},
            {"op": "deleteArtifact", "name": "../etc"},
            {"op": "promoteArtifact", "name": " "},
            {"op": "putEntity", "entity": _entity("E-ok")},
        ],
    )
    codes = [(r["status"], r["error"].get("code") or r["error"]["error"]) for r in results[:-1]]
    assert codes == [
        (400, "INVALID_REQUEST"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_REQUEST"),
        (400, "INVALID_ENTITY_ID"),
        (400, "InvalidArtifactName"),
        (400, "InvalidPromoteRequest"),
    ]
    assert results[1]["op"] == "explode"
    assert results[0]["op"] is None
    assert "entityId: Field required" in results[2]["error"]["message"]
    assert "extra" in results[3]["error"]["message"]
    assert results[-1]["status"] == 201


async def test_valid_items_share_one_commit(app: FastAPI, client: httpx.AsyncClient) -> None:
    database = app.state.roomserver.db
    before = database.commits
    results = await _batch(
        client, [{"op": "putEntity", "entity": _entity(f"E-m-{i:03d}")} for i in range(200)]
    )
    assert {r["status"] for r in results} == {201}
    assert database.commits == before + 1
    assert len((await client.get(f"/room/{ROOM}/state")).json()["entities"]) == 200


async def _events(server: RoomServerHandle, room: str, count: int) -> list[tuple[str, dict[str, Any]]]:
    """The room's first `count` events from `GET /events` (kind and data, the manager's `since` dropped)."""
    headers = {"Authorization": f"Bearer {server.token}", "Last-Event-ID": "0"}
    found: list[tuple[str, dict[str, Any]]] = []
    async with (
        httpx.AsyncClient(base_url=server.url, headers=headers, timeout=10) as http,
        http.stream("GET", f"/events?roomId={room}") as stream,
    ):
        async with asyncio.timeout(10):
            async for line in stream.aiter_lines():
                if line.startswith("data: ") and '"type":"event"' in line.replace(" ", ""):
                    payload = json.loads(line[6:])["payload"]
                    data = payload["data"]
                    if isinstance(data.get("manager"), dict):
                        data["manager"].pop("since")
                    found.append((payload["kind"], data))
                    if len(found) == count:
                        break
    return found


async def test_events_are_those_of_the_single_endpoints(tmp_path: Path) -> None:
    single_room, batch_room = "room-single-01", "room-batched-01"
    async with (
        running_roomserver(tmp_path / "data") as server,
        httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http,
    ):
        for room in (single_room, batch_room):
            assert (await upload_artifact(http, room, "plan", b"plan")).status_code == 201
        changed = _entity("E-ann", displayName="A")
        manager = {"name": "operator", "url": None, "membership": "open"}
        calls: list[tuple[str, str, Any]] = [
            ("PUT", "/room/{r}/entities/E-ann", _entity("E-ann")),
            ("PUT", "/room/{r}/entities/E-bob", _entity("E-bob")),
            ("PUT", "/room/{r}/entities/E-ann", changed),
            ("PUT", "/room/{r}/entities/E-bob", _entity("E-bob")),
            ("PUT", "/rooms/{r}/policies", {"allowResourceCreation": True}),
            ("PUT", "/rooms/{r}/manager", manager),
            ("POST", "/rooms/{r}/artifacts/promote", {"name": "plan"}),
            ("DELETE", "/rooms/{r}/artifacts/plan", None),
            ("DELETE", "/room/{r}/entities/E-bob", None),
            ("DELETE", "/room/{r}/entities/E-ann", None),
        ]
        for method, path, body in calls:
            answer = await http.request(method, path.format(r=single_room), json=body)
            assert answer.status_code < 300, answer.text
        results = await _batch(
            http,
            [
                {"op": "putEntity", "entity": _entity("E-ann")},
                {"op": "putEntity", "entity": _entity("E-bob")},
                {"op": "putEntity", "entity": changed},
                {"op": "putEntity", "entity": _entity("E-bob")},
                {"op": "putPolicies", "policies": {"allowResourceCreation": True}},
                {"op": "putManager", "manager": manager},
                {"op": "promoteArtifact", "name": "plan"},
                {"op": "deleteArtifact", "name": "plan"},
                {"op": "removeEntity", "entityId": "E-bob"},
                {"op": "removeEntity", "entityId": "E-ann"},
            ],
            room=batch_room,
        )
        assert [r["status"] for r in results] == [201, 201, 200, 200, 200, 200, 201, 204, 204, 204]
        expected = 1 + 2 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 2  # ADDED, JOIN+STATE, JOIN, UPDATED, ..., LEAVE+STATE
        single, batched = (
            await _events(server, single_room, expected),
            await _events(server, batch_room, expected),
        )
    assert [kind for kind, _ in single][-3:] == ["ENTITY.LEAVE", "ENTITY.LEAVE", "ROOM.STATE"]
    assert batched == single


async def test_each_item_needs_its_own_scope(tmp_path: Path) -> None:
    async with (
        running_roomserver(tmp_path / "data", scopes=("room:read", "room:entities:write")) as server,
        httpx.AsyncClient(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http,
    ):
        results = await _batch(
            http,
            [
                {"op": "putEntity", "entity": _entity("E-ann")},
                {"op": "putPolicies", "policies": {"dmVisibilityDefault": "everyone"}},  # scope before body
                {"op": "putManager", "manager": {"name": "op"}},
                {"op": "deleteArtifact", "name": "plan"},
            ],
        )
        assert [r["status"] for r in results] == [201, 403, 403, 403]
        assert {r["error"]["code"] for r in results[1:]} == {"INSUFFICIENT_SCOPE"}
        assert "room:policies:write" in results[1]["error"]["message"]
        state = (await http.get(f"/room/{ROOM}/state")).json()
        assert [e["id"] for e in state["entities"]] == ["E-ann"]
        assert state["manager"] is None


async def test_whole_request_errors_apply_nothing(app: FastAPI, client: httpx.AsyncClient) -> None:
    path = f"/room/{ROOM}/batch"
    one = {"op": "putEntity", "entity": _entity("E-ann")}
    too_many = await client.post(path, json={"items": [one] * (MAX_BATCH_ITEMS + 1)})
    assert too_many.status_code == 400
    assert too_many.json()["code"] == "BATCH_TOO_LARGE"
    for content in (
        b"{",
        b"[]",
        b'{"items": {}}',
        b'{"items": [], "more": 1}',
        b'{"items": [' * 100 + b"]" * 100,
    ):
        answer = await client.post(path, content=content, headers={"Content-Type": "application/json"})
        assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_REQUEST"), content
    bad_room = await client.post("/room/not-a-room/batch", json={"items": [one]})
    assert (bad_room.status_code, bad_room.json()["code"]) == (400, "INVALID_ROOM_ID")
    assert (await client.get(f"/room/{ROOM}/state")).json()["entities"] == []
    assert (await client.post(path, json={"items": []})).json() == {"roomId": ROOM, "results": []}


async def test_the_body_is_authorised_before_it_is_read_and_capped(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    path = f"/room/{ROOM}/batch"
    cap = app.state.roomserver.settings.max_batch_body_bytes
    assert cap == 4 * 1024 * 1024
    junk = b"x" * (cap + 1)
    anonymous = await client.post(path, content=junk, headers={"Authorization": ""})
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTH_REQUIRED")
    large = await client.post(path, content=junk)
    assert (large.status_code, large.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    # a body of more than the default 1 MiB cap but within the batch's is served
    policy = {"env_whitelist": [f"VARIABLE_{n}_" + "X" * 200 for n in range(5)]}
    items = [
        {"op": "putEntity", "entity": _entity(f"E-p-{i:03d}", displayName="x" * 200, policy=policy)}
        for i in range(MAX_BATCH_ITEMS)
    ]
    content = json.dumps({"items": items}).encode()
    assert 1024 * 1024 < len(content) < cap
    answer = await client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    assert {r["status"] for r in answer.json()["results"]} == {201}


async def test_a_removal_closes_the_entitys_live_sessions_after_the_commit(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await _batch(client, [{"op": "putEntity", "entity": _entity("E-ann")}])
    sessions = app.state.roomserver.sessions  # the hub's registry: what a hub Join records
    closed: list[str] = []

    async def close() -> None:
        closed.append("c1")

    sessions.add(Session("c1", ROOM, Entity("E-ann", "agent"), None, declared=True), close)
    results = await _batch(client, [{"op": "removeEntity", "entityId": "E-ann"}])
    assert results[0]["status"] == 204
    assert closed == ["c1"]
    assert not sessions.is_connected(ROOM, "E-ann")
