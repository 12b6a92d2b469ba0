"""The room-server client's side of fencing, against a real room server: every write to a room carries
the replica's epoch, a write with an older epoch than one the server has seen is `Fenced` (never retried)
and reported to the replica's fences, and a write to a room the replica does not hold is not sent."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from roomcontract.fencing import FENCING_FEATURE
from roomoperator.clients.errors import Fenced
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.codes import RunCode
from roomoperator.model.writes import Write
from tests.engine.conftest import fast_settings, room_spec
from tests.support.roomserver import RoomServerHandle

ROOM = "room-fence-client"


@dataclass
class Fences:
    """A replica's epochs, as `store/leases.Fencing` keeps them."""

    held: dict[str, int]
    refused: list[tuple[str, str]] = field(default_factory=list)

    def epoch(self, room_id: str) -> int | None:
        return self.held.get(room_id)

    def fenced(self, room_id: str, reason: str) -> None:
        self.held.pop(room_id, None)
        self.refused.append((room_id, reason))


async def test_a_write_with_an_older_epoch_is_fenced(roomserver: RoomServerHandle) -> None:
    new, old = Fences({ROOM: 2}), Fences({ROOM: 1})
    async with (
        RoomServerClient(roomserver.url, token=roomserver.token, fences=new) as owner,
        RoomServerClient(roomserver.url, token=roomserver.token, fences=old) as stale,
        RoomServerClient(roomserver.url, token=roomserver.token) as member,
    ):
        if FENCING_FEATURE not in await owner.features():
            pytest.skip("this room server does not check fencing tokens yet")
        assert await owner.put_entity(ROOM, "E-new", {"kind": "agent"})
        with pytest.raises(Fenced, match="older than 2"):
            await stale.put_entity(ROOM, "E-old", {"kind": "agent"})
        assert old.refused[0][0] == ROOM
        assert old.epoch(ROOM) is None  # the replica dropped the room
        with pytest.raises(Fenced, match="does not own"):
            await stale.batch(ROOM, [Write.put_entity({"entityId": "E-old", "kind": "agent"})])
        assert await member.put_entity(ROOM, "E-member", {"kind": "agent"})  # no header: not fenced
        state = await owner.get_state(ROOM)
        assert sorted(entity.id for entity in state.entities) == ["E-member", "E-new"]
        assert new.refused == []


async def test_a_run_whose_write_is_fenced_stops_with_the_fenced_code(roomserver: RoomServerHandle) -> None:
    owner_fences, stale_fences = Fences({ROOM: 7}), Fences({ROOM: 6})
    async with (
        RoomServerClient(roomserver.url, token=roomserver.token, fences=owner_fences) as owner,
        RoomServerClient(roomserver.url, token=roomserver.token, fences=stale_fences) as stale,
    ):
        if FENCING_FEATURE not in await owner.features():
            pytest.skip("this room server does not check fencing tokens yet")
        assert await owner.put_entity(ROOM, "E-owner", {"kind": "agent"})
        spec = room_spec(
            ROOM, entities=[{"id": "E-owner", "kind": "agent"}, {"id": "E-stale", "kind": "agent"}]
        )
        result = await Reconciler(stale, fast_settings()).reconcile(spec, seed_root=Path("."))
        assert (result.success, result.code) == (False, RunCode.FENCED), result
        assert "another operator replica owns the room" in result.errors[-1]
        assert stale_fences.refused
        assert stale_fences.epoch(ROOM) is None  # the replica dropped the room
        state = await owner.get_state(ROOM)
        assert [entity.id for entity in state.entities] == ["E-owner"]  # nothing of the stale run's
