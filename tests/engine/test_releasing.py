"""A prune of an open room (`release`) against the real room server: only the declared entities whose latest
join the operator's own token made are kicked; one a member joined first, or re-joined, stays; a server
that cannot name its events' actors, or a log that cannot be read, kicks none and the run says why."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.results import RunResult
from tests.engine.conftest import fast_settings, room_spec
from tests.support.faults import fault_proxy
from tests.support.roomserver import RoomServerHandle

ROOM = "room-eng-01"
DECLARED = frozenset({"E-agent-a", "E-agent-b", "E-agent-c"})


def agents(*ids: str) -> list[dict[str, str]]:
    return [{"id": entity, "kind": "agent"} for entity in ids]


async def join_as_member(admin: httpx.AsyncClient, entity: str) -> None:
    answer = await admin.post(f"/room/{ROOM}/join", json={"entityId": entity, "kind": "agent"})
    assert answer.status_code in (200, 201), answer.text


async def in_room(admin: httpx.AsyncClient) -> list[str]:
    state = (await admin.get(f"/room/{ROOM}/state")).json()
    return sorted(entity["id"] for entity in state["entities"])


async def open_room(roomserver: RoomServerHandle, admin: httpx.AsyncClient, seeds: Path) -> None:
    """E-agent-b joined by a member before the spec declares it; E-agent-a and E-agent-c by the operator,
    then E-agent-c re-joined by the member; E-member joined by the member alone."""
    await join_as_member(admin, "E-agent-b")
    spec = room_spec(membership="open", entities=agents(*sorted(DECLARED)))
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        result = await Reconciler(client, fast_settings()).reconcile(spec, seed_root=seeds)
    assert result.applied == ("join:E-agent-a", "join:E-agent-c"), result.warnings
    assert (await admin.delete(f"/room/{ROOM}/entities/E-agent-c")).status_code == 204
    await join_as_member(admin, "E-agent-c")
    await join_as_member(admin, "E-member")


async def prune(url: str, token: str, seeds: Path) -> RunResult:
    async with RoomServerClient(url, token=token) as client:
        return await Reconciler(client, fast_settings()).reconcile(
            room_spec(version=2, membership="open"), seed_root=seeds, release=DECLARED
        )


@pytest.fixture
def admin(roomserver: RoomServerHandle) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=roomserver.url, headers={"Authorization": f"Bearer {roomserver.admin_token}"}, timeout=10
    )


async def test_only_what_the_operator_joined_last_is_kicked(
    roomserver: RoomServerHandle, admin: httpx.AsyncClient, seeds: Path
) -> None:
    await open_room(roomserver, admin, seeds)
    result = await prune(roomserver.url, roomserver.token, seeds)
    assert result.success, result.errors
    assert result.applied == ("kick:E-agent-a",)
    assert result.converged is True
    assert await in_room(admin) == ["E-agent-b", "E-agent-c", "E-member"]
    assert not [w for w in result.warnings if "who joined" in w]


@pytest.mark.parametrize(
    ("method", "path", "status", "says"),
    [
        ("GET", "/events", 503, "The event log of room room-eng-01 could not be read"),
        ("GET", "/auth/whoami", 404, "does not name the actors of its events (events.actor.v1)"),
    ],
)
async def test_nothing_is_kicked_when_the_server_cannot_say_who_joined(
    roomserver: RoomServerHandle,
    admin: httpx.AsyncClient,
    seeds: Path,
    method: str,
    path: str,
    status: int,
    says: str,
) -> None:
    await open_room(roomserver, admin, seeds)
    async with fault_proxy(roomserver.url) as (proxy, url):
        proxy.inject(method, path, status=status, times=100)
        result = await prune(url, roomserver.token, seeds)
    assert result.applied == ()
    assert await in_room(admin) == ["E-agent-a", "E-agent-b", "E-agent-c", "E-member"]
    (warning,) = [w for w in result.warnings if says in w]
    assert warning.endswith("so none is removed (E-agent-a, E-agent-b, E-agent-c)")
