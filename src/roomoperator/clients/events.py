"""Follows the room server's `GET /events` SSE stream and reports which room changed.

The operator uses it to correct drift at once instead of waiting for the next interval. The stream is
read through `RoomServerClient.events` (the client's one request funnel) and resumed with `Last-Event-ID`
after any disconnection, so no change is missed while reconnecting; reconnects wait by the operator's one
backoff formula (`model.backoff`), starting over once a stream was open.

A server that lists `events.actor.v1` in `GET /auth/whoami` is asked for each event's actor
(`withActor=1`, `roomcontract.actors`), and each change reports who made it, so a drift notification can
name them; the operator's own writes (its token's name) report none. Other servers (the reference has no
whoami) are followed as before, without actors.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from roomcontract.actors import ACTOR_KEY, EVENT_ACTOR_FEATURE
from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.model.backoff import Backoff

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class RoomChange:
    """One room event, as the follower reports it."""

    room_id: str
    event_id: str | None
    """The event's id (its sequence number on this project's server), None when the frame had none."""
    actor: str | None
    """Who made it when the server says so and it was not the operator's own token; None otherwise."""


class RoomEventFollower:
    """Calls `on_change(change)` for every room event; `connected` is set while the stream is open."""

    def __init__(
        self,
        base_url: str,
        *,
        on_change: Callable[[RoomChange], None],
        token: str | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.on_change = on_change
        self.last_event_id: str | None = None
        self.connected = asyncio.Event()
        self._token = token
        self._backoff = Backoff(retry_initial, retry_max)

    async def run(self) -> None:
        """Follow the stream forever (until cancelled), reconnecting with backoff."""
        failures = 0
        async with RoomServerClient(self.base_url, token=self._token) as client:
            while True:
                try:
                    await self._follow(client)
                except (RoomServerError, UnicodeDecodeError) as exc:
                    log.debug("room-server events unavailable", error=str(exc))
                failures = 1 if self.connected.is_set() else failures + 1
                self.connected.clear()
                await asyncio.sleep(self._backoff.delay(failures))

    async def _follow(self, client: RoomServerClient) -> None:
        with_actor = EVENT_ACTOR_FEATURE in await client.features()
        own = (await client.whoami()).name if with_actor else None
        async for event in client.events(last_event_id=self.last_event_id, with_actor=with_actor):
            self.connected.set()  # the server's first event (`connected`) proves the stream open
            if event.event != "event":
                continue
            if event.id:
                self.last_event_id = event.id
            try:
                envelope = json.loads(event.data)
            except ValueError:
                continue
            room_id = envelope.get("roomId") if isinstance(envelope, dict) else None
            if not isinstance(room_id, str):
                continue
            actor = envelope.get(ACTOR_KEY)
            if not isinstance(actor, str) or actor == own:
                actor = None
            self.on_change(RoomChange(room_id, event.id or None, actor))
