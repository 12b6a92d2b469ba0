"""Prometheus metrics of one operator instance (its own registry, so several apps never collide).

The six reference series (`room_operator_reconcile_*`, `room_operator_queued_requests`,
`room_operator_active_reconciliations`) are registered and updated, plus drift, guardrail refusals,
per-phase durations, room-server requests by outcome and their latency, and (replicas on PostgreSQL) this
replica's rooms owned, lease renewals, takeovers, hand-backs and fenced writes refused, and the garbage
collector's pauses. No per-room labels.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "OperatorMetrics"]


class OperatorMetrics:
    """Every series the operator exposes on `GET /metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.attempts = Counter(
            "room_operator_reconcile_attempts", "Total reconciliation attempts", registry=r
        )
        self.successes = Counter(
            "room_operator_reconcile_successes", "Successful reconciliations", registry=r
        )
        self.failures = Counter("room_operator_reconcile_failures", "Failed reconciliations", registry=r)
        self.duration = Histogram(
            "room_operator_reconcile_duration_seconds", "Reconciliation duration in seconds", registry=r
        )
        self.queued = Gauge(
            "room_operator_queued_requests", "Number of queued reconciliation requests", registry=r
        )
        self.active = Gauge(
            "room_operator_active_reconciliations", "Number of active reconciliations", registry=r
        )
        self.drift = Counter(
            "room_operator_drift_detected",
            "Loop runs that found the room different from its spec",
            registry=r,
        )
        self.unchanged = Counter(
            "room_operator_unchanged_checks",
            "Loop runs not needed: the room server answered 304 for the state the last run left settled",
            registry=r,
        )
        self.guardrail_refusals = Counter(
            "room_operator_guardrail_refusals", "Runs refused by the guardrails", registry=r
        )
        self.phase_duration = Histogram(
            "room_operator_phase_duration_seconds", "Duration of each reconcile phase", ["phase"], registry=r
        )
        self.server_requests = Counter(
            "room_operator_room_server_requests",
            "Requests to the room server by outcome",
            ["outcome"],
            registry=r,
        )
        self.server_latency = Histogram(
            "room_operator_room_server_request_duration_seconds", "Room-server request latency", registry=r
        )
        self.managed_rooms = Gauge("room_operator_managed_rooms", "Rooms under management", registry=r)
        self.stalled_rooms = Gauge("room_operator_stalled_rooms", "Managed rooms marked Stalled", registry=r)
        self.health = Gauge("room_operator_health", "0 healthy, 1 degraded, 2 unhealthy", registry=r)
        self.rooms_owned = Gauge(
            "room_operator_rooms_owned", "Rooms this replica holds the lease of", registry=r
        )
        self.lease_renewals = Counter(
            "room_operator_lease_renewals", "Room leases renewed by this replica", registry=r
        )
        self.takeovers = Counter(
            "room_operator_takeovers", "Rooms this replica took over from another replica", registry=r
        )
        self.handbacks = Counter(
            "room_operator_handbacks", "Rooms this replica handed back to their preferred replica", registry=r
        )
        self.leases_lost = Counter(
            "room_operator_leases_lost",
            "Room leases this replica found expired or taken at renewal",
            registry=r,
        )
        self.fenced_writes = Counter(
            "room_operator_fenced_writes",
            "Writes refused by fencing (this replica had lost the room)",
            registry=r,
        )
        self.gc_pauses = Histogram(
            "room_operator_gc_pause_seconds",
            "Pauses of the Python garbage collector, by generation (`service/collector.py`)",
            ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self._by_outcome: dict[str, Counter] = {}  # `labels()` looks its child up under a lock

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe_request(self, status: int | None, seconds: float) -> None:
        """One room-server request: its outcome (`2xx`... by status class, `error` without an answer)."""
        outcome = "error" if status is None else f"{status // 100}xx"
        counter = self._by_outcome.get(outcome)
        if counter is None:
            counter = self._by_outcome[outcome] = self.server_requests.labels(outcome=outcome)
        counter.inc()
        self.server_latency.observe(seconds)
