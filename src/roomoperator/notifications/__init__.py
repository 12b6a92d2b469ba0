"""Webhook notifications of what needs a person (a run failed, a guardrail refused, drift corrected, a
room stalled or recovered, a source failed to sync), fed by the service's typed run events.

This layer sits between the service and the engine and store: it may use `store/`, `engine/`, `spec/`
and `model/`, never `service/`, which composes it."""
