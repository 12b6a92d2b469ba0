"""The room-event follower against real room servers: it reports changed rooms and, after the server drops
the stream, reconnects and resumes with `Last-Event-ID`, so changes made meanwhile are not missed; each
change names its actor (not the operator's own token), and a server that keeps no actors is not asked."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from roomoperator.clients.events import RoomChange, RoomEventFollower
from roomoperator.clients.roomserver import RoomServerClient
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.roomserver import FULL_SCOPES, upload_artifact, write_tokens
from tests.support.servers import free_port, serve_app


@contextlib.asynccontextmanager
async def serving(data_dir: Path, tokens: Path, *, port: int | None = None) -> AsyncIterator[str]:
    """A room server over `data_dir` (its events are durable there): stopping it drops open streams."""
    app = create_app(ServerSettings(data_dir=data_dir, tokens_file=tokens))
    async with serve_app(app, port=port) as url:
        try:
            yield url
        finally:
            app.state.roomserver.feed.close()


async def _join(url: str, token: str, room_id: str) -> None:
    async with RoomServerClient(url, token=token) as client:
        await client.put_entity(room_id, "E-agent-1", {"entityId": "E-agent-1", "kind": "agent"})


async def _until(changes: asyncio.Queue[str], room_id: str) -> list[str]:
    """The rooms reported up to and including the first report of `room_id`."""
    seen: list[str] = []
    while not seen or seen[-1] != room_id:
        seen.append(await asyncio.wait_for(changes.get(), timeout=30))
    return seen


async def test_the_follower_resumes_with_last_event_id_after_the_stream_drops(tmp_path: Path) -> None:
    data = tmp_path / "roomserver"
    tokens, token, _ = write_tokens(data, FULL_SCOPES)
    port = free_port()
    changes: asyncio.Queue[str] = asyncio.Queue()
    follower = RoomEventFollower(
        f"http://127.0.0.1:{port}",
        token=token,
        on_change=lambda change: changes.put_nowait(change.room_id),
        retry_initial=0.01,
        retry_max=0.05,
    )
    task = asyncio.create_task(follower.run())
    try:
        async with serving(data, tokens, port=port) as url:
            await asyncio.wait_for(follower.connected.wait(), timeout=30)
            await _join(url, token, "room-test-a")
            assert await _until(changes, "room-test-a") == ["room-test-a"]
            before = follower.last_event_id
        # The stream is gone with its server; the room changes while no stream is open (through another
        # server over the same data), then the first server's address answers again.
        async with serving(data, tokens) as elsewhere:
            await _join(elsewhere, token, "room-test-b")
        async with serving(data, tokens, port=port):
            # Without Last-Event-ID a new stream starts after the latest event and room-test-b never comes.
            assert set(await _until(changes, "room-test-b")) <= {"room-test-a", "room-test-b"}
            assert follower.connected.is_set()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert before is not None
    assert follower.last_event_id is not None
    assert int(follower.last_event_id) > int(before)


async def test_each_change_names_its_actor_but_the_operator_s_own(tmp_path: Path) -> None:
    data = tmp_path / "roomserver"
    tokens, token, admin_token = write_tokens(data, FULL_SCOPES)
    changes: asyncio.Queue[RoomChange] = asyncio.Queue()
    async with serving(data, tokens) as url:
        follower = RoomEventFollower(url, token=token, on_change=changes.put_nowait)  # the `test` token's
        task = asyncio.create_task(follower.run())
        try:
            await asyncio.wait_for(follower.connected.wait(), timeout=30)
            await _join(url, token, "room-test-a")  # ENTITY.JOIN and ROOM.STATE: the follower's own token
            async with httpx.AsyncClient(
                base_url=url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=10
            ) as admin:
                policies = {"allowResourceCreation": True}
                assert (await admin.put("/rooms/room-test-a/policies", json=policies)).status_code == 200
                assert (await upload_artifact(admin, "room-test-a", "plan", b"x")).status_code == 201
                member = {"X-Entity-Id": "E-agent-1"}
                deleted = await admin.delete("/rooms/room-test-a/artifacts/plan", headers=member)
                assert deleted.status_code == 204
            seen = [await asyncio.wait_for(changes.get(), timeout=30) for _ in range(5)]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert [change.actor for change in seen] == [None, None, "admin", "admin", "E-agent-1"]
    assert {change.room_id for change in seen} == {"room-test-a"}
    assert [int(change.event_id or 0) for change in seen] == sorted(int(c.event_id or 0) for c in seen)


async def test_a_server_without_actors_is_followed_without_asking() -> None:
    """A reference-like server (no `GET /auth/whoami`, the reference's frames) is followed as before: the
    follower does not send `withActor`, and its changes name nobody."""
    queries: list[str] = []
    ended = asyncio.Event()

    async def events(request: Request) -> StreamingResponse:
        queries.append(request.url.query)
        envelope = {"id": "01J", "roomId": "room-test-a", "ts": "t", "type": "event", "payload": {}}

        async def frames() -> AsyncIterator[bytes]:
            yield b'event: connected\ndata: {"type":"connected"}\n\n'
            yield f"id: 01J\nevent: event\ndata: {json.dumps(envelope)}\n\n".encode()
            await ended.wait()

        return StreamingResponse(frames(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/events", events)])
    changes: asyncio.Queue[RoomChange] = asyncio.Queue()
    async with serve_app(app) as url:
        follower = RoomEventFollower(url, on_change=changes.put_nowait)
        task = asyncio.create_task(follower.run())
        try:
            change = await asyncio.wait_for(changes.get(), timeout=30)
        finally:
            ended.set()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert change == RoomChange("room-test-a", "01J", None)
    assert queries == [""]
