"""Concurrent writers: parallel uploads of one name get consecutive versions; racing joins and kicks agree."""

from __future__ import annotations

import asyncio
import hashlib

import httpx

from tests.support.roomserver import RoomServerHandle, upload_artifact

ROOM = "room-ai-lab-01"


async def test_parallel_uploads_of_one_name_get_consecutive_versions(server: RoomServerHandle) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    payloads = [f"version content {i}".encode() * 1000 for i in range(24)]
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as client:
        answers = await asyncio.gather(
            *(upload_artifact(client, ROOM, "shared-doc", data) for data in payloads)
        )
        assert {a.status_code for a in answers} == {201}
        versions = (await client.get(f"/rooms/{ROOM}/artifacts/shared-doc/versions")).json()["items"]
        assert [v["version"] for v in versions] == list(range(1, 25))
        assert sorted(v["sha256"] for v in versions) == sorted(
            hashlib.sha256(p).hexdigest() for p in payloads
        )
        by_version = {a.json()["manifest"]["version"]: a.json()["manifest"]["sha256"] for a in answers}
        for number in (1, 12, 24):
            stored = await client.get(f"/rooms/{ROOM}/artifacts/shared-doc", params={"version": number})
            assert hashlib.sha256(stored.content).hexdigest() == by_version[number]
        latest = (await client.get(f"/room/{ROOM}/state")).json()["artifacts"][0]
        assert (latest["version"], latest["sha256"]) == (24, by_version[24])


async def test_racing_joins_and_kicks_leave_a_consistent_roster(client: httpx.AsyncClient) -> None:
    ids = [f"E-member-{i:02d}" for i in range(30)]

    async def join(entity_id: str) -> int:
        answer = await client.post(f"/room/{ROOM}/join", json={"entityId": entity_id, "kind": "agent"})
        return answer.status_code

    async def kick(entity_id: str) -> int:
        return (await client.delete(f"/room/{ROOM}/entities/{entity_id}")).status_code

    joins = await asyncio.gather(*(join(e) for e in ids + ids))  # every id joined twice at once
    assert sorted(joins) == [201] * 30 + [409] * 30
    leaving = ids[::2]
    racing = await asyncio.gather(*(kick(e) for e in leaving + leaving), *(join(e) for e in ids[1::2]))
    assert sorted(racing[: 2 * len(leaving)]) == [204] * len(leaving) + [404] * len(leaving)
    assert set(racing[2 * len(leaving) :]) == {409}
    state = (await client.get(f"/room/{ROOM}/state")).json()
    assert [e["id"] for e in state["entities"]] == ids[1::2]
    # one ENTITY.JOIN per join, one ENTITY.LEAVE per kick, one ROOM.STATE (init -> active): nothing lost
    assert state["revision"] == 30 + len(leaving) + 1
