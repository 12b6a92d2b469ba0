"""The long-lived operator: HTTP API, per-room queue, continuous loop, health, metrics, audit streaming."""
