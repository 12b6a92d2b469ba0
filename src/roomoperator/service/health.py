"""Operator health: healthy, degraded (rooms stalled, room server slow, a replica that cannot renew its
leases) or unhealthy (room server unreachable or refusing our token, store down), from a periodic probe,
from what runs observe and from the replica's lease period (`service/replicas.py`)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from roomoperator.model.audit import utcnow
from roomoperator.model.codes import RunCode

SLOW_SECONDS = 1.0


class Health(IntEnum):
    """The reference's `HealthStatus` enum (written as an integer on `/status`)."""

    HEALTHY = 0
    DEGRADED = 1
    UNHEALTHY = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass
class HealthMonitor:
    """The latest observations about the operator's dependencies."""

    reachable: bool = True
    authorized: bool = True
    latency: float | None = None
    last_error: str | None = None
    store_ok: bool = True
    stalled_rooms: int = 0
    leases_ok: bool = True
    """False while this replica cannot renew its room leases (replicas on PostgreSQL)."""
    replica: str | None = None
    """This replica's id (replica mode)."""
    live_replicas: int = 0
    """Replicas with a heartbeat within the lease time, at this replica's last look (replica mode)."""
    checked_at: dt.datetime = field(default_factory=utcnow)

    def observe_probe(self, *, ok: bool, started: float) -> None:
        self.reachable = ok
        self.latency = time.perf_counter() - started
        self.checked_at = utcnow()
        if ok:
            self.last_error = None

    def observe_run(self, code: RunCode | None, errors: Sequence[str]) -> None:
        """A run's failure code tells whether the room server answered and accepted our token."""
        if code is RunCode.ROOM_SERVER_UNREACHABLE:
            self.reachable = False
            self.last_error = errors[0] if errors else code
        elif code is RunCode.UNAUTHORIZED:
            self.authorized = False
            self.last_error = errors[0] if errors else code
        elif code is not RunCode.ROOM_SERVER_ERROR:
            self.reachable = True
            self.authorized = True

    @property
    def status(self) -> Health:
        if not (self.reachable and self.authorized and self.store_ok):
            return Health.UNHEALTHY
        if (
            self.stalled_rooms
            or not self.leases_ok
            or (self.latency is not None and self.latency > SLOW_SECONDS)
        ):
            return Health.DEGRADED
        return Health.HEALTHY

    def checks(self) -> dict[str, Any]:
        """The `checks` object of `GET /health`."""
        server = "unhealthy" if not (self.reachable and self.authorized) else "healthy"
        if server == "healthy" and self.latency is not None and self.latency > SLOW_SECONDS:
            server = "degraded"
        return {
            "roomServer": {
                "status": server,
                "reachable": self.reachable,
                "authorized": self.authorized,
                "latencyMs": None if self.latency is None else round(self.latency * 1000, 1),
                "lastError": self.last_error,
                "checkedAt": self.checked_at,
            },
            "store": {"status": "healthy" if self.store_ok else "unhealthy"},
            "rooms": {
                "status": "degraded" if self.stalled_rooms else "healthy",
                "stalled": self.stalled_rooms,
            },
        } | self._leases()

    def _leases(self) -> dict[str, Any]:
        if self.replica is None:
            return {}
        status = "healthy" if self.leases_ok else "degraded"
        return {"leases": {"status": status, "replica": self.replica, "live": self.live_replicas}}
