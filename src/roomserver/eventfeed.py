"""Live delivery of stored events to `GET /events` subscribers, without loss.

Events are durable in the database before they are announced; a subscriber keeps a cursor (the last
sequence it sent) and re-reads the database after each announcement. A slow reader therefore never loses
an event (the reference dropped the oldest past 256), and `Last-Event-ID` resumes from any point.
"""

from __future__ import annotations

import asyncio


class EventFeed:
    """The highest committed event sequence, and a way to wait until it grows."""

    def __init__(self, latest: int = 0):
        self.latest = latest
        self._grew = asyncio.Event()
        self.closing = asyncio.Event()

    def announce(self, seq: int) -> None:
        if seq > self.latest:
            self.latest = seq
            self._grew.set()
            self._grew = asyncio.Event()

    async def wait_beyond(self, seq: int, *, within: float) -> bool:
        """True once an event after `seq` exists; False after `within` seconds or when the feed closes."""
        if self.latest > seq:
            return True
        grew = asyncio.ensure_future(self._grew.wait())
        closing = asyncio.ensure_future(self.closing.wait())
        try:
            await asyncio.wait((grew, closing), timeout=within, return_when=asyncio.FIRST_COMPLETED)
        finally:
            grew.cancel()
            closing.cancel()
        return self.latest > seq

    def close(self) -> None:
        """End every subscription (server shutdown), so streaming responses let the server stop."""
        self.closing.set()
