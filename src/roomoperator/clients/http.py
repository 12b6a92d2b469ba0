"""What the operator's HTTP clients share (`roomserver.py`, `operator.py`): an aiohttp session made on first
use, inside the running event loop, and Server-Sent Events read from an open answer.

The event-stream parser is written here (about 40 lines, the WHATWG event-stream rules: CR, LF and CRLF
line ends, multi-line data, comments such as `: ping` skipped, `id` kept across events). The SSE clients
for aiohttp on PyPI each own the connection and its reconnect backoff, which must stay with the caller
here (the one backoff formula, `Last-Event-ID`), and the sans-I/O parsers found were too young to trust.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Self

import aiohttp

_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class SseEvent:
    """One dispatched event: `event` (its name, "message" by default), `data`, `id` (None when never sent)."""

    event: str
    data: str
    id: str | None


class _EventParser:
    """Feeds decoded text in, gives complete events out; an event ends at a blank line."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._started = False
        self._name = ""
        self._data: list[str] = []
        self._last_id: str | None = None

    def feed(self, chunk: bytes) -> list[SseEvent]:
        text = self._buffer + self._decoder.decode(chunk)
        if not self._started and text:
            self._started, text = True, text.removeprefix("\ufeff")
        # Lines end at CRLF, LF or CR only. The last piece has no end yet; a CR at the very end waits
        # too, as the LF of a CRLF may come in the next chunk.
        pieces = _LINE_END.split(text)
        self._buffer = pieces.pop()
        if text.endswith("\r") and pieces:
            self._buffer = pieces.pop() + "\r"
        return [event for line in pieces if (event := self._line(line)) is not None]

    def _line(self, line: str) -> SseEvent | None:
        if not line:
            if not self._data:
                self._name = ""
                return None
            event = SseEvent(self._name or "message", "\n".join(self._data), self._last_id)
            self._name, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._last_id = value
        return None


class SessionClient:
    """Owns one aiohttp session: `timeout` bounds connecting and each wait for bytes, except on streams
    (`_stream_timeout`), which may stay quiet between events. `aclose` (or leaving `async with`) closes it."""

    def __init__(self, *, timeout: float, headers: Mapping[str, str] | None = None) -> None:
        self._session_headers = dict(headers or {})
        self._timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=timeout)
        self._stream_timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_read=None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(headers=self._session_headers, timeout=self._timeout)
        return self._session


async def read_events(response: aiohttp.ClientResponse) -> AsyncIterator[SseEvent]:
    """The events of `response`'s body as they arrive; ends when the server closes the stream."""
    parser = _EventParser()
    async for chunk in response.content.iter_any():
        for event in parser.feed(chunk):
            yield event
