"""The room-server client's one seam (its base URL) and one funnel, against the real room server behind the
fault-injecting proxy: every call is seen there, the conditional state read included."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from roomoperator.clients.errors import Transient
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.writes import Write
from tests.support.faults import fault_proxy
from tests.support.roomserver import RoomServerHandle

ROOM = "room-seam-1"
Call = Callable[[RoomServerClient, Path], Awaitable[Any]]


async def _seed(client: RoomServerClient, tmp_path: Path, text: str = "# plan\n") -> Any:
    source = tmp_path / "plan.md"
    source.write_text(text)
    return await client.seed_artifact(
        ROOM, name="plan", type_="document", workspace="room", tags=[], fingerprint=None, source=source
    )


async def _first_event(client: RoomServerClient, _: Path) -> Any:
    return await anext(client.events())


CALLS: dict[str, Call] = {
    "get_state": lambda client, _: client.get_state(ROOM),
    "unchanged": lambda client, _: client.unchanged(ROOM, '"stale"'),
    "whoami": lambda client, _: client.whoami(),
    "mcp_status": lambda client, _: client.mcp_status(),
    "download_artifact": lambda client, tmp: client.download_artifact(
        ROOM, "plan", version=1, target=tmp / "out"
    ),
    "events": _first_event,
    "put_entity": lambda client, _: client.put_entity(
        ROOM, "E-agent-1", {"entityId": "E-agent-1", "kind": "agent"}
    ),
    "kick": lambda client, _: client.kick(ROOM, "E-agent-1"),
    "seed_artifact": _seed,
    "promote_artifact": lambda client, _: client.promote_artifact(ROOM, "plan"),
    "delete_artifact": lambda client, _: client.delete_artifact(ROOM, "plan"),
    "put_policies": lambda client, _: client.put_policies(ROOM, {"allowResourceCreation": True}),
    "mcp_load": lambda client, _: client.mcp_load([{"id": "p1"}]),
    "put_manager": lambda client, _: client.put_manager(ROOM, name="operator", url=None),
    "write": lambda client, _: client.write(ROOM, Write.remove_entity("E-agent-1")),
    "batch": lambda client, _: client.batch(ROOM, [Write.remove_entity("E-agent-1")]),
    "features": lambda client, _: client.features(),
    "batching": lambda client, _: client.batching(),
}


def test_every_call_of_the_client_is_in_the_seam_test() -> None:
    calls = {
        name
        for name, member in inspect.getmembers(RoomServerClient)
        if not name.startswith("_")
        and (inspect.iscoroutinefunction(member) or inspect.isasyncgenfunction(member))
    }
    assert calls - {"aclose", "health"} == set(CALLS)


@pytest.mark.parametrize("name", sorted(CALLS))
async def test_the_base_url_seam_reaches_every_call(
    roomserver: RoomServerHandle, tmp_path: Path, name: str
) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        for method in ("GET", "POST", "PUT", "DELETE"):
            proxy.inject(method, r"/.*", status=503, headers={"Retry-After": "4"})
        with pytest.raises(Transient) as failed:
            await CALLS[name](client, tmp_path)
        assert (failed.value.status, failed.value.code, failed.value.retry_after) == (
            503,
            "INJECTED_FAULT",
            4.0,
        )
        assert client.requests == 1
        assert [status for _, _, status in proxy.hits] == [503]
        proxy.faults.clear()
        proxy.inject("GET", r"/health", status=503)
        assert await client.health() is False
        assert await client.health() is True
        assert proxy.hits[-2:] == [("GET", "/health", 503), ("GET", "/health", 200)]


async def test_a_fault_on_the_conditional_state_read_is_seen(roomserver: RoomServerHandle) -> None:
    state = f"/room/{ROOM}/state"
    seen: list[int | None] = []
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(
            url, token=roomserver.token, observer=lambda status, _: seen.append(status)
        ) as client,
    ):
        first = await client.get_state(ROOM)
        assert (await client.get_state(ROOM)).etag == first.etag  # answered 304 from the kept body
        proxy.inject("GET", state, status=503, headers={"Retry-After": "3"})
        with pytest.raises(Transient) as failed:
            await client.get_state(ROOM)
        assert failed.value.retry_after == 3.0
        after = await client.get_state(ROOM)
        assert (after.etag, client.requests) == (first.etag, 4)
    assert first.etag is not None
    assert [hit for hit in proxy.hits if hit[1] == state] == [
        ("GET", state, 200),
        ("GET", state, 304),
        ("GET", state, 503),
        ("GET", state, 200),  # the failed read dropped the kept body, so this one is unconditional
    ]
    assert seen == [200, 304, 503, 200]


async def test_unchanged_asks_with_the_tag_and_keeps_a_changed_answer(roomserver: RoomServerHandle) -> None:
    state = f"/room/{ROOM}/state"
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        first = await client.get_state(ROOM)
        assert first.etag is not None
        assert client.state_tag(ROOM) == first.etag
        assert await client.unchanged(ROOM, first.etag) is True
        await client.put_entity(ROOM, "E-agent-9", {"entityId": "E-agent-9", "kind": "agent"})
        assert await client.unchanged(ROOM, first.etag) is False
        changed = client.state_tag(ROOM)
        assert changed not in (None, first.etag)
        after = await client.get_state(ROOM)  # conditional on the kept answer: 304, parsed from it
        assert (after.etag, [e.id for e in after.entities]) == (changed, ["E-agent-9"])
    assert [status for method, path, status in proxy.hits if path == state] == [200, 304, 200, 304]


async def test_download_streams_the_version_asked_for(roomserver: RoomServerHandle, tmp_path: Path) -> None:
    async with RoomServerClient(roomserver.url, token=roomserver.token) as client:
        for text in ("# one\n", "# two\n" * 50_000):  # the second is larger than one read chunk
            await _seed(client, tmp_path, text)
        await client.download_artifact(ROOM, "plan", version=1, target=tmp_path / "v1")
        await client.download_artifact(ROOM, "plan", version=2, target=tmp_path / "v2")
    assert (tmp_path / "v1").read_text() == "# one\n"
    assert (tmp_path / "v2").read_text() == "# two\n" * 50_000


@contextlib.asynccontextmanager
async def _drops_kept_alive_connections() -> AsyncIterator[tuple[str, list[int]]]:
    """An HTTP server that answers the first request of each connection and closes the connection,
    unanswered, on the second: what a server whose keep-alive ran out does to a reused connection."""
    served: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = len(served)
        served.append(0)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while await reader.readuntil(b"\r\n\r\n"):
                if served[connection]:
                    break
                served[connection] += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", served
    finally:
        server.close()
        await server.wait_closed()


async def test_an_idempotent_call_is_sent_again_when_the_kept_connection_was_closed() -> None:
    async with _drops_kept_alive_connections() as (url, served), RoomServerClient(url) as client:
        assert await client.health() is True
        assert await client.health() is True  # its first connection was closed: sent again on a new one
        assert client.requests == 2
    assert served == [1, 1]
