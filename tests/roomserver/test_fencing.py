"""Fencing (`X-RoomOp-Fence`): a write older than the highest epoch seen for its room is refused with 409
`FENCED` and changes nothing; newer and equal epochs pass and the highest is durable; other rooms, other
writers (no header) and reads are unaffected; a malformed header is 400 naming it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from roomcontract.fencing import FENCE_HEADER
from tests.support.roomserver import running_roomserver, upload_artifact

ROOM = "room-fencing-01"
OTHER = "room-fencing-02"


def _entity(entity_id: str, name: str = "Agent") -> dict[str, Any]:
    return {"entityId": entity_id, "kind": "agent", "displayName": name, "capabilities": ["read_artifacts"]}


def _fence(epoch: int | str) -> dict[str, str]:
    return {FENCE_HEADER: str(epoch)}


async def _put(client: httpx.AsyncClient, entity: dict[str, Any], epoch: int | str | None) -> httpx.Response:
    headers = {} if epoch is None else _fence(epoch)
    return await client.put(f"/room/{ROOM}/entities/{entity['entityId']}", json=entity, headers=headers)


async def _names(client: httpx.AsyncClient, room: str = ROOM) -> dict[str, str]:
    state = (await client.get(f"/room/{room}/state")).json()
    return {e["id"]: e.get("displayName") for e in state["entities"]}


async def test_an_older_epoch_is_refused_and_changes_nothing(client: httpx.AsyncClient) -> None:
    first = await _put(client, _entity("E-agent-1", "v1"), 3)
    assert first.status_code in (200, 201), first.text
    newer = await _put(client, _entity("E-agent-1", "v2"), 5)
    assert newer.status_code in (200, 201), newer.text

    stale = await _put(client, _entity("E-agent-1", "stale"), 3)
    assert stale.status_code == 409
    body = stale.json()
    assert body["code"] == "FENCED"
    assert body["message"].startswith(f"{FENCE_HEADER} 3 is older than 5 already seen for room {ROOM}")
    assert (await _names(client))["E-agent-1"] == "v2"

    for refused in (
        client.delete(f"/room/{ROOM}/entities/E-agent-1", headers=_fence(4)),
        client.put(f"/rooms/{ROOM}/policies", json={"maxArtifactsPerEntity": 3}, headers=_fence(4)),
        client.post(
            f"/room/{ROOM}/batch",
            json={"items": [{"op": "removeEntity", "entityId": "E-agent-1"}]},
            headers=_fence(1),
        ),
    ):
        answer = await refused
        assert answer.status_code == 409, answer.text
        assert answer.json()["code"] == "FENCED"
    assert "E-agent-1" in await _names(client)

    same = await _put(client, _entity("E-agent-2"), 5)
    assert same.status_code in (200, 201), same.text


async def test_unfenced_writers_reads_and_other_rooms_are_unaffected(client: httpx.AsyncClient) -> None:
    assert (await client.post(f"/room/{ROOM}/join", json=_entity("E-agent-1"), headers=_fence(9))).is_success
    member = await client.post(f"/room/{ROOM}/join", json=_entity("E-human-1"))
    assert member.is_success, member.text  # no header: a member or a reference client
    assert (await client.get(f"/room/{ROOM}/state", headers=_fence(1))).status_code == 200
    other = await client.post(f"/room/{OTHER}/join", json=_entity("E-agent-1"), headers=_fence(1))
    assert other.is_success, other.text


async def test_an_upload_under_an_older_epoch_stores_no_version(client: httpx.AsyncClient) -> None:
    await client.post(f"/room/{ROOM}/join", json=_entity("E-agent-1"), headers=_fence(7))
    client.headers.update(_fence(6))
    try:
        answer = await upload_artifact(client, ROOM, "plan", b"stale bytes")
    finally:
        del client.headers[FENCE_HEADER]
    assert answer.status_code == 409, answer.text
    assert answer.json()["code"] == "FENCED"
    assert (await client.get(f"/rooms/{ROOM}/artifacts")).json().get("items", []) == []


@pytest.mark.parametrize("value", ["0", "-1", "abc", "²".encode("latin-1"), "9" * 30, "1.5", ""])
async def test_a_malformed_fence_is_400_naming_the_header(
    client: httpx.AsyncClient, value: str | bytes
) -> None:
    answer = await client.post(f"/room/{ROOM}/join", json=_entity("E-agent-1"), headers={FENCE_HEADER: value})
    assert answer.status_code == 400, answer.text
    assert FENCE_HEADER in answer.json()["message"]
    assert (await client.get(f"/room/{ROOM}/state")).json()["entities"] == []


async def test_racing_writers_never_let_the_older_epoch_write_after_the_newer(app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {app.state.token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://roomserver", headers=headers) as http:

        async def write(epoch: int, n: int) -> tuple[int, int]:
            answer = await http.put(
                f"/room/{ROOM}/entities/E-agent-1",
                json=_entity("E-agent-1", f"{epoch}-{n}"),
                headers=_fence(epoch),
            )
            return epoch, answer.status_code

        await write(1, 0)
        results = await asyncio.gather(*(write(epoch, n) for n in range(20) for epoch in (1, 2)))
        name = (await _names(http))["E-agent-1"]
        assert name.startswith("2-"), name  # once epoch 2 wrote, no epoch-1 write landed after it
        assert {code for epoch, code in results if epoch == 2} <= {200, 201}


async def test_the_highest_epoch_survives_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for epoch, expected in ((4, 201), (None, None)):
        async with running_roomserver(data) as server:
            headers = {"Authorization": f"Bearer {server.token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers) as http:
                if epoch is not None:
                    answer = await http.post(
                        f"/room/{ROOM}/join", json=_entity("E-agent-1"), headers=_fence(epoch)
                    )
                    assert answer.status_code == expected, answer.text
                else:
                    answer = await http.post(
                        f"/room/{ROOM}/join", json=_entity("E-agent-2"), headers=_fence(3)
                    )
                    assert answer.status_code == 409, answer.text
