"""The room-event follower against real room servers: it reports changed rooms and, after the server drops
the stream, reconnects and resumes with `Last-Event-ID`, so changes made meanwhile are not missed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from roomoperator.clients.events import RoomEventFollower
from roomoperator.clients.roomserver import RoomServerClient
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.roomserver import FULL_SCOPES, write_tokens
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
        on_change=changes.put_nowait,
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
