"""How the room server's HTTP connections are served: uvicorn's h11 protocol with a request-head timeout.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) and the connections in flight
(`limit_concurrency`, 503 past it), but waits forever for a request head: a client that connects and
sends half a request line, or headers one byte at a time, would hold its connection for good. The
protocol here closes a connection whose request head (line and headers) is not complete within
`header_timeout_seconds` of its first byte, or of the connection being made, answering
`408 Request Timeout`. Bodies are timed by `api.guard`, which sees the route.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, Final

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from roomserver.settings import ServerSettings

_TIMEOUT_TEXT: Final = b"the request head took too long\n"
_TIMEOUT_ANSWER: Final = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_TIMEOUT_TEXT), _TIMEOUT_TEXT)
)


class HeadTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that does not finish a request head in time."""

    header_timeout: float = 10.0  # set per server by `protocol_for`

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._watch_head()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_watching()
        super().connection_lost(exc)

    def _watch_head(self) -> None:
        """Armed while the connection waits for a request head (h11's client state is IDLE), from the
        first moment it does; cancelled once a head is parsed."""
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(self.header_timeout, self._head_timed_out)
        else:
            self._stop_watching()

    def _stop_watching(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.write(_TIMEOUT_ANSWER)
            self.transport.close()


def protocol_for(settings: ServerSettings) -> type[HeadTimeoutProtocol]:
    """The protocol class with this server's head timeout (uvicorn builds one protocol per connection)."""

    class Configured(HeadTimeoutProtocol):
        header_timeout = settings.header_timeout_seconds

    return Configured


_ACCESS_TOKEN: Final = re.compile(r"(access_token=)[^&\s]*")


class RedactTokens(logging.Filter):
    """Keeps the hub's `?access_token=` (as browsers send it) out of uvicorn's logs: the access log's
    request line and the WebSocket `[accepted]` line both carry the query."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _ACCESS_TOKEN.sub(r"\1***", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def uvicorn_config(app: Any, settings: ServerSettings, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for `app`: address, the connection limits of `settings`, the head timeout,
    and an access log that never shows a token."""
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=protocol_for(settings),
        timeout_keep_alive=settings.keep_alive_seconds,
        limit_concurrency=settings.max_connections + settings.hub_max_connections,
        **options,
    )
    for name in ("uvicorn.access", "uvicorn.error"):  # configured by `uvicorn.Config` just above
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())
    return config
