"""The reference system's clients, over HTTP against the real operator and room server.

Deviations are in `docs/compatibility.md`.

Each test sends what the reference's own clients (its Node test client, its dashboard, the curl lines of its
docs) send, and checks the answer the reference gave, or the documented fix of a reference defect.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.hub.client import HubError, entity, hub_client
from tests.service.conftest import Operator, room_spec
from tests.support.roomserver import RoomServerHandle


def _one_agent(room_id: str, **entity: Any) -> dict[str, Any]:
    spec = room_spec(room_id, entities=0)
    spec["spec"]["entities"] = [{"id": "E-agent-1", "kind": "agent", **entity}]
    return {"spec": spec}


async def test_a_room_id_the_reference_room_server_refuses_is_refused_by_both(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    refused = await operator.http.post("/apply", json=_one_agent("bad-room"))
    assert refused.status_code == 400
    assert refused.json()["issues"][0]["path"] == "spec.roomId"
    join = await admin.post("/room/bad-room/join", json={"entityId": "E-agent-1", "kind": "agent"})
    assert (join.status_code, join.json()) == (
        400,
        {
            "error": "BadRequest",
            "code": "INVALID_ROOM_ID",
            "message": "roomId must match pattern: room-[A-Za-z0-9_-]{6,}",
        },
    )
    accepted = await operator.http.post("/apply", json=_one_agent("room-abc123"))
    assert accepted.status_code == 200, accepted.text


async def test_nobody_may_command_an_entity_declared_with_none(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    body = _one_agent("room-commands-01", policy={"allow_commands_from": "none"})
    assert (await operator.http.post("/apply", json=body)).status_code == 200
    state = (await admin.get("/room/room-commands-01/state")).json()
    assert state["entities"][0]["policy"]["allow_commands_from"] == "none"


async def test_to_ensure_lists_every_declared_entity_present_on_both_sides(operator: Operator) -> None:
    body = _one_agent("room-ensure-01")
    first = (await operator.http.post("/apply", json=body)).json()
    assert (first["diff"]["toJoin"], first["diff"]["toEnsure"]) == (["E-agent-1"], [])
    body["spec"]["spec"]["entities"][0]["displayName"] = "Renamed"
    body["spec"]["metadata"]["version"] = 2
    second = (await operator.http.post("/apply", json=body)).json()
    assert second["diff"]["toEnsure"] == ["E-agent-1"]  # the reference's unit test: one entry, one entity
    assert second["diff"]["toUpdate"] == ["E-agent-1"]
    assert list(second["diff"])[:8] == [
        "toJoin", "toKick", "toEnsure", "toSeed", "toPromote", "toApply", "toDeleteArtifacts", "blocked"
    ]  # fmt: skip


async def test_an_empty_dm_visibility_default_is_team_with_the_reference_warning(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    for room_id, policies in (("room-dmvis-01", {"dmVisibilityDefault": ""}), ("room-dmvis-02", {})):
        body = _one_agent(room_id)
        body["spec"]["spec"]["policies"] = policies
        answer = await operator.http.post("/apply", json=body)
        assert answer.status_code == 200, answer.text
        assert "dmVisibilityDefault not set, will default to 'team'" in answer.json()["warnings"]
        policies_now = (await admin.get(f"/rooms/{room_id}/policies")).json()
        assert policies_now["dmVisibilityDefault"] == "team"


async def test_numbers_given_as_strings_bind_as_the_reference_read_them(operator: Operator) -> None:
    body = _one_agent("room-strings-01")
    body["spec"]["metadata"]["version"] = "4"
    answer = await operator.http.post("/apply", json=body)
    assert answer.status_code == 200, answer.text
    assert (await operator.http.get("/rooms/room-strings-01")).json()["specVersion"] == 4


async def test_route_literals_match_in_any_case_and_with_a_trailing_slash(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    applied = await operator.http.post("/Apply/", json=_one_agent("room-Routes-01"))
    assert applied.status_code == 200, applied.text
    status = await operator.http.get("/STATUS/Rooms/room-Routes-01/")
    assert (status.status_code, status.json()["roomId"]) == (200, "room-Routes-01")
    assert (await operator.http.get("/status/rooms/room-routes-01")).status_code == 404  # ids keep their case
    assert (await admin.get("/Health/")).status_code == 200
    state = await admin.get("/ROOM/room-Routes-01/State")
    assert [entity["id"] for entity in state.json()["entities"]] == ["E-agent-1"]
    assert (await operator.http.get("/no/such/route")).status_code == 404


async def test_enumerated_values_in_any_case_and_null_lists_bind_as_the_reference_server_read_them(
    operator: Operator, admin: httpx.AsyncClient
) -> None:
    body = _one_agent("room-values-01", visibility="Team", capabilities=None, policy=None)
    body["spec"]["spec"]["entities"].append(
        {"id": "E-agent-2", "kind": "Agent", "policy": {"allowCommandsFrom": "Orchestrator", "scopes": None}}
    )
    body["spec"]["spec"]["policies"] = {"dmVisibilityDefault": "PUBLIC"}
    answer = await operator.http.post("/apply", json=body)
    assert answer.status_code == 200, answer.text
    state = (await admin.get("/room/room-values-01/state")).json()
    first, second = state["entities"]
    assert (first["visibility"], first["capabilities"], first["policy"]["allow_commands_from"]) == (
        "team",
        [],
        "any",
    )
    assert (second["kind"], second["policy"]["allow_commands_from"]) == ("agent", "orchestrator")
    assert state["policies"]["dmVisibilityDefault"] == "public"


async def test_an_open_room_admits_undeclared_members_over_the_hub_and_a_closed_one_does_not(
    operator: Operator, roomserver: RoomServerHandle
) -> None:
    body = _one_agent("room-members-01")
    body["spec"]["spec"]["membership"] = "open"
    assert (await operator.http.post("/apply", json=body)).status_code == 200
    async with hub_client(roomserver.url, roomserver.token) as guest:
        roster = await guest.invoke("Join", "room-members-01", entity("E-guest"))
        assert {member["id"] for member in roster} >= {"E-guest"}
        await guest.invoke("Leave", "room-members-01", "E-guest")
    body["spec"]["spec"]["membership"] = "closed"
    body["spec"]["metadata"]["version"] = 2
    assert (await operator.http.post("/apply", json=body)).status_code == 200
    async with hub_client(roomserver.url, roomserver.token) as guest:
        with pytest.raises(HubError) as refused:
            await guest.invoke("Join", "room-members-01", entity("E-guest"))
    assert refused.value.body is not None
    assert refused.value.body["code"] == "ENTITY_NOT_DECLARED"
