"""Interop with Python's `pysignalr` client, unchanged: negotiate, token, Join, ListEntities, SendToRoom
with `message` and `event` on a second client, a denied command, a direct message, Leave."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from pysignalr.client import SignalRClient
from pysignalr.messages import CompletionMessage

from tests.hub.client import chat, command, entity
from tests.hub.conftest import ROOM
from tests.support.roomserver import RoomServerHandle


class Member:
    """A pysignalr connection with awaitable completions and queues of client events."""

    def __init__(self, client: SignalRClient):
        self.client = client
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._waiting: asyncio.Queue[CompletionMessage] = asyncio.Queue()

        async def on_event(arguments: list[dict[str, Any]]) -> None:
            await self.events.put(arguments[0])

        async def on_message(arguments: list[dict[str, Any]]) -> None:
            await self.messages.put(arguments[0])

        async def on_completion(message: Any) -> None:
            await self._waiting.put(message)

        client.on("event", on_event)
        client.on("message", on_message)
        client.on_error(on_completion)
        self._on_completion = on_completion

    async def invoke(self, method: str, *args: Any) -> CompletionMessage:
        """One invocation at a time: its completion (an error one comes through `on_error` first)."""
        await self.client.send(method, list(args), on_invocation=self._on_completion)
        completion = await asyncio.wait_for(self._waiting.get(), 10)
        if completion.error:
            await asyncio.wait_for(self._waiting.get(), 10)  # the same completion, also to on_invocation
        return completion

    async def event(self, kind: str) -> dict[str, Any]:
        while True:
            envelope = await asyncio.wait_for(self.events.get(), 10)
            if envelope["payload"]["kind"] == kind:
                return envelope


@contextlib.asynccontextmanager
async def member(server: RoomServerHandle, token: str) -> AsyncIterator[Member]:
    client = SignalRClient(f"{server.url}/room", headers={"Authorization": f"Bearer {token}"})
    opened = asyncio.Event()

    async def on_open() -> None:
        opened.set()

    client.on_open(on_open)
    running = asyncio.create_task(client.run())
    try:
        await asyncio.wait_for(opened.wait(), 10)
        yield Member(client)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_pysignalr_speaks_to_the_hub_unchanged(server: RoomServerHandle) -> None:
    async with member(server, server.token) as alice, member(server, server.admin_token) as bob:
        joined = await alice.invoke("Join", ROOM, entity("E-alice", "human", displayName="Alice"))
        assert [e["id"] for e in joined.result] == ["E-alice"]
        guarded = entity("E-bob", "agent", policy={"allow_commands_from": "orchestrator"})
        assert [e["id"] for e in (await bob.invoke("Join", ROOM, guarded)).result] == ["E-alice", "E-bob"]
        seen = await alice.event("ENTITY.JOIN")
        while seen["payload"]["data"]["entity"]["id"] != "E-bob":
            seen = await alice.event("ENTITY.JOIN")
        assert seen["roomId"] == ROOM
        assert [e["displayName"] for e in (await bob.invoke("ListEntities", ROOM)).result] == ["Alice", None]

        assert (await alice.invoke("SendToRoom", ROOM, chat("E-alice", "Olá!"))).error is None
        message = await asyncio.wait_for(bob.messages.get(), 10)
        assert (message["from"], message["type"], message["payload"]) == ("E-alice", "chat", {"text": "Olá!"})
        assert message["roomId"] == ROOM
        assert len(message["id"]) == 26

        denied = await alice.invoke("SendToRoom", ROOM, command("E-alice", "E-bob"))
        assert denied.error == (
            "An unexpected error occurred invoking 'SendToRoom' on the server. HubException: "
            '{"error":"Forbidden","code":"PERM_DENIED","message":"not allowed to command this target"}'
        )

        assert (
            await alice.invoke("SendToRoom", ROOM, chat("E-alice", "just you", channel="@E-bob"))
        ).error is None
        direct = await asyncio.wait_for(bob.messages.get(), 10)
        assert (direct["channel"], direct["payload"]["text"]) == ("@E-bob", "just you")

        left = await bob.invoke("Leave", ROOM, "E-bob")
        assert (left.error, left.result) == (None, None)
        assert (await alice.event("ENTITY.LEAVE"))["payload"]["data"] == {"entityId": "E-bob"}
