"""Guardrails: the reference tests (operator.md §14) re-expressed, its edge cases (§5), our additions."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomoperator.model.changes import Plan, Verdict
from roomoperator.model.codes import GuardrailCode
from roomoperator.model.observed import ObservedRoom
from roomoperator.planning import guardrails
from roomoperator.planning.planner import plan_room
from roomoperator.settings import GuardrailSettings
from roomoperator.spec.models import RoomSpec


def entity(i: int) -> dict[str, Any]:
    return {"id": f"E-e{i:02d}", "kind": "agent"}


OPERATOR = "operator"


def artifact(i: int) -> dict[str, Any]:
    """An artifact the operator seeded (only those are ever deleted)."""
    return {
        "name": f"a{i:02d}",
        "type": "document",
        "workspace": "shared",
        "sha256": "0" * 64,
        "createdBy": OPERATOR,
        "updatedBy": OPERATOR,
    }


def judge(
    present: int,
    kept: int,
    *,
    artifacts: int = 0,
    kept_artifacts: int = 0,
    confirm: bool = False,
    **limits: Any,
) -> tuple[Verdict, Plan]:
    """`present` entities in the room, the spec keeps the first `kept` (same for artifacts)."""
    observed = ObservedRoom.model_validate(
        {
            "roomId": "room-test-1",
            "entities": [entity(i) for i in range(present)],
            "artifacts": [artifact(i) for i in range(artifacts)],
        }
    )
    spec = RoomSpec.model_validate(
        {
            "metadata": {"name": "g", "version": 1},
            "spec": {
                "roomId": "room-test-1",
                "entities": [entity(i) for i in range(kept)],
                "artifacts": [
                    {"name": f"a{i:02d}", "type": "document", "workspace": "shared"}
                    for i in range(kept_artifacts)
                ],
            },
        }
    )
    plan = plan_room(spec, observed, seeds={}, operator=OPERATOR)
    return guardrails.check(plan, observed, settings=GuardrailSettings(**limits), confirm=confirm), plan


def test_change_threshold_requires_confirm() -> None:
    verdict, _ = judge(10, 4, max_entities_kick_per_cycle=10)
    assert not verdict.passed
    assert any("X-Confirm:true" in v.message for v in verdict.violations)
    assert [v.code for v in verdict.violations] == [GuardrailCode.CHANGE_RATIO]


def test_change_threshold_passes_with_confirm() -> None:
    verdict, _ = judge(10, 4, max_entities_kick_per_cycle=10, confirm=True)
    assert verdict.passed
    assert verdict.warnings == ("High change ratio (60%) detected but confirmed",)


def test_kick_limit_is_not_lifted_by_confirm() -> None:
    verdict, _ = judge(10, 5, max_entities_kick_per_cycle=3, change_threshold=1.0, confirm=True)
    assert [v.message for v in verdict.violations] == ["Kick count (5) exceeds limit (3)"]


def test_reference_transcript_a3_order_and_texts() -> None:
    verdict, _ = judge(10, 3)
    assert [v.message for v in verdict.violations] == [
        "Kick count (7) exceeds limit (5)",
        "Change ratio (70%) exceeds threshold (50%). X-Confirm:true header required.",
    ]


def test_delete_limit() -> None:
    verdict, _ = judge(0, 0, artifacts=12, kept_artifacts=1, change_threshold=1.0)
    assert [v.message for v in verdict.violations] == ["Artifact delete count (11) exceeds limit (10)"]


def test_exactly_half_passes_and_mixed_ratio_counts_removals_only() -> None:
    assert judge(10, 5)[0].passed
    verdict, _ = judge(10, 6, artifacts=20, kept_artifacts=15)
    assert verdict.passed  # 4 kicks + 5 deletes of 30 = 30%


def test_confirm_not_required_by_configuration_warns_truthfully() -> None:
    verdict, _ = judge(10, 4, max_entities_kick_per_cycle=10, require_confirm_header=False)
    assert verdict.passed
    assert verdict.warnings == (
        "High change ratio (60%) detected; confirmation not required by configuration",
    )


def test_empty_room_never_needs_confirm_for_additions() -> None:
    assert judge(0, 5)[0].passed


def test_emptying_a_room_needs_confirm() -> None:
    verdict, _ = judge(2, 0, change_threshold=1.0)
    assert [v.code for v in verdict.violations] == [GuardrailCode.EMPTY_ROOM]
    assert judge(2, 0, change_threshold=1.0, confirm=True)[0].passed
    assert judge(2, 0, change_threshold=1.0, allow_empty_room=True)[0].passed


@pytest.mark.parametrize(
    ("ratio", "text"), [(0.625, "62%"), (0.875, "88%"), (0.6, "60%"), (0.5, "50%"), (1 / 3, "33%")]
)
def test_percent_rounds_half_to_even(ratio: float, text: str) -> None:
    assert guardrails.percent(ratio) == text


@settings(max_examples=150, deadline=None)
@given(
    present=st.integers(min_value=0, max_value=12),
    kept=st.integers(min_value=0, max_value=12),
    limit=st.integers(min_value=0, max_value=8),
    threshold=st.floats(min_value=0, max_value=1),
    confirm=st.booleans(),
)
def test_limits_hold_and_confirm_only_lifts_the_ratio(
    present: int, kept: int, limit: int, threshold: float, confirm: bool
) -> None:
    kept = min(kept, present)
    verdict, plan = judge(
        present,
        kept,
        confirm=confirm,
        max_entities_kick_per_cycle=limit,
        change_threshold=threshold,
        allow_empty_room=True,
    )
    kicks = present - kept
    codes = {v.code for v in verdict.violations}
    assert (GuardrailCode.KICK_LIMIT in codes) == (kicks > limit)
    ratio = kicks / present if present else 0.0
    assert (GuardrailCode.CHANGE_RATIO in codes) == (ratio > threshold and not confirm)
    assert len(plan.changes) == kicks
