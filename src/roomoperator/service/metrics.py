"""Prometheus metrics of one operator instance (its own registry, so several apps never collide).

The six reference series (`room_operator_reconcile_*`, `room_operator_queued_requests`,
`room_operator_active_reconciliations`) are registered and updated, plus drift, guardrail refusals,
per-phase durations, room-server requests by outcome and their latency. No per-room labels.
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
