"""The versioned JSON form of a plan (`roomop plan --output json`, `RunResult.plan`, `docs/plan-format.md`).

The CLI renders this JSON for people (`cli/rendering.py`); the service stores and serves it.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

from roomoperator.model.changes import Change, Op, Plan, payload_json
from roomoperator.planning.difflists import diff_lists

FORMAT_VERSION = "1.0"


def change_to_json(change: Change) -> dict[str, Any]:
    blocked = change.blocked
    return {
        "op": str(change.op),
        "kind": str(change.kind),
        "name": change.name,
        "reason": change.reason,
        "scope": change.scope,
        "before": payload_json(change.before),
        "after": payload_json(change.after),
        "blocked": None
        if blocked is None
        else {"code": str(blocked.code), "message": blocked.message, "fatal": blocked.fatal},
    }


def plan_to_json(plan: Plan) -> dict[str, Any]:
    """The plan in format `FORMAT_VERSION`: summary, changes in apply order, guardrails, reference diff,
    the undeclared items the operator leaves alone (`unmanaged`) and the declared ones it does not act on
    (`skipped`, with the reason): neither are changes nor in a diff list."""
    counts = Counter(str(c.op) for c in plan.actionable)
    return {
        "formatVersion": FORMAT_VERSION,
        "roomId": plan.room_id,
        "spec": {"name": plan.spec_name, "version": plan.spec_version},
        "observedRevision": plan.observed_revision,
        "summary": {
            **{str(op): counts.get(str(op), 0) for op in Op},
            "blocked": len(plan.blocked),
            "total": len(plan.changes),
        },
        "changes": [change_to_json(c) for c in plan],
        "guardrails": {
            "passed": plan.verdict.passed,
            "violations": [{"code": v.code, "message": v.message} for v in plan.verdict.violations],
            "warnings": list(plan.verdict.warnings),
        },
        "diff": diff_lists(plan).model_dump(by_alias=True),
        "unmanaged": [item.to_json() for item in plan.unmanaged],
        "skipped": [item.to_json() for item in plan.skipped],
    }


def changes_digest(plan: Mapping[str, Any]) -> str:
    """The SHA-256 (hex) of a JSON plan's `changes` in canonical form: what a caller confirmed, small
    enough to send back (`X-Expect-Plan`) and compared by the engine before it writes."""
    canonical = json.dumps(plan.get("changes"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
