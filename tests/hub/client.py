"""A minimal SignalR JSON client for the hub tests: negotiate, WebSocket, handshake, invoke, client events.

It speaks the wire exactly as roomserver.md §11.3 sketches it, so tests can assert frames byte for byte
(error strings, completions without `result`, several records per message); the interop tests use the
official clients instead (`test_interop_*.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

RS = "\x1e"


class HubError(Exception):
    """A completion with `error`: the text as the server sent it, and the JSON after `HubException: `."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text
        _, marker, inner = text.partition("HubException: ")
        self.body: dict[str, Any] | None = None
        if marker:
            with contextlib.suppress(json.JSONDecodeError):
                self.body = json.loads(inner)

    @property
    def code(self) -> Any:
        assert self.body is not None, self.text
        return self.body["code"]


class HubClient:
    """One connection; `events` and `messages` collect the client events `event` and `message`."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.frames: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # everything else (pings, close)
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for data in self.ws:
                assert isinstance(data, str)
                for record in data.split(RS)[:-1]:
                    frame = json.loads(record)
                    if frame.get("type") == 3 and frame.get("invocationId") in self._pending:
                        self._pending.pop(frame["invocationId"]).set_result(frame)
                    elif frame.get("type") == 1 and frame.get("target") == "event":
                        await self.events.put(frame["arguments"][0])
                    elif frame.get("type") == 1 and frame.get("target") == "message":
                        await self.messages.put(frame["arguments"][0])
                    else:
                        await self.frames.put(frame)
        await self.frames.put({"type": "closed"})

    async def completion(self, method: str, *args: Any) -> dict[str, Any]:
        """Invoke and return the completion frame as sent."""
        invocation_id = str(next(self._ids))
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[invocation_id] = future
        await self.send({"type": 1, "invocationId": invocation_id, "target": method, "arguments": list(args)})
        return await asyncio.wait_for(future, 10)

    async def invoke(self, method: str, *args: Any) -> Any:
        frame = await self.completion(method, *args)
        if "error" in frame:
            raise HubError(frame["error"])
        return frame.get("result")

    async def send(self, *frames: dict[str, Any]) -> None:
        """Several messages in one WebSocket message."""
        await self.ws.send("".join(json.dumps(f) + RS for f in frames))

    async def next_event(self, kind: str) -> dict[str, Any]:
        """The next `event` of this kind (earlier ones of other kinds are skipped)."""
        while True:
            envelope = await asyncio.wait_for(self.events.get(), 10)
            if envelope["payload"]["kind"] == kind:
                return envelope

    async def next_frame(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.frames.get(), 10)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/room"


@contextlib.asynccontextmanager
async def hub_client(
    base: str, token: str | None, *, negotiate: bool = True, headers: dict[str, str] | None = None
) -> AsyncIterator[HubClient]:
    """Negotiate (v1), connect with the token in the Authorization header, handshake."""
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    all_headers = {**auth, **(headers or {})}
    url = ws_url(base)
    if negotiate:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{base}/room/negotiate?negotiateVersion=1", headers=all_headers)
            answer.raise_for_status()
            url += f"?id={answer.json()['connectionToken']}"
    async with connect(url, additional_headers=all_headers) as ws:
        await ws.send(json.dumps({"protocol": "json", "version": 1}) + RS)
        assert await ws.recv() == "{}" + RS
        client = HubClient(ws)
        try:
            yield client
        finally:
            await client.close()


def entity(entity_id: str, kind: str = "agent", **fields: Any) -> dict[str, Any]:
    return {"id": entity_id, "kind": kind, **fields}


def chat(sender: str, text: str, **fields: Any) -> dict[str, Any]:
    return {"from": sender, "type": "chat", "payload": {"text": text}, **fields}


def command(sender: str, target: str, **fields: Any) -> dict[str, Any]:
    return {
        "from": sender,
        "type": "command",
        "payload": {"target": target, "port": "text.generate"},
        **fields,
    }
