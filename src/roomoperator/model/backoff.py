"""The one backoff formula of the operator: item retries, a failing room's next run, event-stream reconnects.

`delay(n) = min(initial * 2**(n-1), maximum) * (1 + jitter * u)` for the n-th consecutive failure
(1-based) and `u` drawn from [0, 1) (the integration guide's formula; the reconcile loop draws `u` from
[-1, 1) to spread rooms both ways). Pure, so each caller brings its own random source (tests pass a
fixed one).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with proportional jitter, in seconds."""

    initial: float
    maximum: float
    jitter: float = 0.0

    def delay(self, failures: int, *, uniform: float = 0.0) -> float:
        """Seconds to wait after the `failures`-th failure in a row (1-based; 0 counts as 1)."""
        base = min(self.initial * 2.0 ** (max(failures, 1) - 1), self.maximum)
        return base * (1 + self.jitter * uniform)
