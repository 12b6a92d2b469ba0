"""The operator's HTTP server settings for slow and idle clients: uvicorn's h11 protocol with deadlines.

uvicorn bounds only the idle time between two requests on a keep-alive connection; a client that opens
connections and sends half a request line, or announces a body and stops, holds each of them (and its
buffers) for ever. `BoundedH11Protocol` closes a connection

- whose request line and headers are not all in `api.header_timeout_seconds` after it was opened, or
  after the first byte of a request that follows another (a `408 Request Timeout` is written first);
- whose request body pauses longer than `api.body_idle_timeout_seconds` between two parts, or takes
  longer than `api.body_timeout_seconds` in all (while the app, not the client, is the one not reading,
  neither counts);
- that stays idle between requests longer than `api.keep_alive_seconds` (uvicorn's own timer).

An app waiting for the rest of a body then sees the client gone (`service/bodies.py` answers it a 400
nobody reads). `server_config` is the one place the operator's uvicorn is configured (`roomop serve`,
`roomop up`).
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from roomoperator.settings import ApiSettings

TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on the headers and on the body of every request."""

    limits: ClassVar[ApiSettings] = ApiSettings()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._timers: dict[str, asyncio.TimerHandle] = {}
        """The armed deadlines: `headers`, and the body's `idle` and `total`."""
        super().connection_made(transport)
        self._arm("headers", self.limits.header_timeout_seconds)

    def connection_lost(self, exc: Exception | None) -> None:
        self._drop("headers", "idle", "total")
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def _follow(self) -> None:
        """Arm or drop the deadlines for what the connection waits for now."""
        if self.transport.is_closing():
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if "headers" not in self._timers and self.conn.trailing_data[0]:  # a request has begun
                self._arm("headers", self.limits.header_timeout_seconds)
            return
        self._drop("headers")
        if state is h11.SEND_BODY:
            self._drop("idle")
            self._arm("idle", self.limits.body_idle_timeout_seconds)
            if "total" not in self._timers:
                self._arm("total", self.limits.body_timeout_seconds)
        else:
            self._drop("idle", "total")

    def _arm(self, name: str, delay: float) -> None:
        self._timers[name] = self.loop.call_later(delay, self._late, name)

    def _drop(self, *names: str) -> None:
        for name in names:
            timer = self._timers.pop(name, None)
            if timer is not None:
                timer.cancel()

    def _late(self, name: str) -> None:
        """A deadline passed: time out, unless the app is the one not reading a body (then look again)."""
        if self.transport.is_closing():
            return
        if name != "headers" and self.flow.read_paused:
            self._arm(name, self.limits.body_idle_timeout_seconds)
            return
        if self.cycle is None or not self.cycle.response_started:
            self.transport.write(TIMED_OUT)
        self.transport.close()


def bounded_protocol(api: ApiSettings) -> type[BoundedH11Protocol]:
    """The protocol class with the deadlines of `api`."""
    return type("OperatorH11Protocol", (BoundedH11Protocol,), {"limits": api})


def server_config(app: Any, api: ApiSettings, **options: Any) -> uvicorn.Config:
    """The uvicorn configuration of the operator's API at `api.host:api.port`, with its deadlines."""
    return uvicorn.Config(
        app,
        host=api.host,
        port=api.port,
        http=bounded_protocol(api),
        timeout_keep_alive=api.keep_alive_seconds,
        **options,
    )
