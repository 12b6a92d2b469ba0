"""Follows the room server's `GET /events` SSE stream and reports which room changed.

The operator uses it to correct drift at once instead of waiting for the next interval. The stream is
resumed with `Last-Event-ID` after any disconnection, so no change is missed while reconnecting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import structlog
from httpx_sse import SSEError, aconnect_sse

log = structlog.get_logger(__name__)


class RoomEventFollower:
    """Calls `on_change(room_id)` for every room event; `connected` is set while the stream is open."""

    def __init__(
        self,
        base_url: str,
        *,
        on_change: Callable[[str], None],
        token: str | None = None,
        retry_initial: float = 0.2,
        retry_max: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.on_change = on_change
        self.last_event_id: str | None = None
        self.connected = asyncio.Event()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._retry_initial = retry_initial
        self._retry_max = retry_max

    async def run(self) -> None:
        """Follow the stream forever (until cancelled), reconnecting with backoff."""
        delay = self._retry_initial
        timeout = httpx.Timeout(10.0, read=None)
        async with httpx.AsyncClient(base_url=self.base_url, headers=self._headers, timeout=timeout) as http:
            while True:
                try:
                    await self._follow(http)
                    delay = self._retry_initial
                except (httpx.HTTPError, SSEError) as exc:
                    log.debug("room-server events unavailable", error=str(exc), retry_in=delay)
                finally:
                    self.connected.clear()
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._retry_max)

    async def _follow(self, http: httpx.AsyncClient) -> None:
        headers = {"Last-Event-ID": self.last_event_id} if self.last_event_id else {}
        async with aconnect_sse(http, "GET", "/events", headers=headers) as source:
            source.response.raise_for_status()
            self.connected.set()
            async for event in source.aiter_sse():
                if event.event != "event":
                    continue
                if event.id:
                    self.last_event_id = event.id
                try:
                    room_id = json.loads(event.data).get("roomId")
                except (ValueError, AttributeError):
                    continue
                if isinstance(room_id, str):
                    self.on_change(room_id)
