"""The serving operator's garbage collector: its thresholds while serving and Python's afterwards, every
collection's pause in `room_operator_gc_pause_seconds`, the setting's validation."""

from __future__ import annotations

import gc

import pytest

from roomoperator.service.collector import collecting
from roomoperator.service.metrics import OperatorMetrics
from roomoperator.settings import OperatorSettings


def pauses(metrics: OperatorMetrics, generation: int) -> float:
    value = metrics.registry.get_sample_value(
        "room_operator_gc_pause_seconds_count", {"generation": str(generation)}
    )
    return value or 0.0


def test_thresholds_hold_while_serving_and_every_pause_is_observed() -> None:
    metrics, before = OperatorMetrics(), gc.get_threshold()
    with collecting((12_345, 7, 3), metrics.gc_pauses):
        assert gc.get_threshold() == (12_345, 7, 3)
        gc.collect()  # a full pass
        gc.collect(0)
        assert pauses(metrics, 2) >= 1
        assert pauses(metrics, 0) >= 1
    assert gc.get_threshold() == before
    counted = pauses(metrics, 2)
    gc.collect()
    assert pauses(metrics, 2) == counted  # no longer observed once the app stopped
    assert b"room_operator_gc_pause_seconds_bucket" in metrics.render()


def test_the_thresholds_come_from_the_environment_and_zero_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert OperatorSettings().runtime.gc_thresholds == (10_000, 10, 10)
    monkeypatch.setenv("ROOMOP_RUNTIME__GC_THRESHOLDS", "[20000, 5, 5]")
    assert OperatorSettings().runtime.gc_thresholds == (20_000, 5, 5)
    monkeypatch.setenv("ROOMOP_RUNTIME__GC_THRESHOLDS", "[0, 10, 10]")
    with pytest.raises(ValueError, match=r"runtime.gc_thresholds: three whole numbers of at least 1"):
        OperatorSettings()
