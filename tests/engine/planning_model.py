"""A test model of what the room server does with each change, to check planning properties: the room
server records the writer of each artifact version (`createdBy` of the first, `updatedBy` of the latest)."""

from __future__ import annotations

from typing import Any

from roomoperator.model.changes import Op, Plan, payload_json
from roomoperator.model.observed import ObservedArtifact, ObservedEntity, ObservedRoom


def _entity(body: dict[str, Any]) -> ObservedEntity:
    return ObservedEntity.model_validate({**body, "id": body["entityId"]})


def apply_plan(plan: Plan, observed: ObservedRoom, *, operator: str | None = None) -> ObservedRoom:
    """The room after every actionable change of `plan` succeeded, written as `operator`."""
    entities = {e.id: e for e in observed.entities}
    artifacts = {a.name: a for a in observed.artifacts}
    policies = observed.policies.model_dump(by_alias=True)
    for change in plan.actionable:
        if change.op is Op.JOIN:
            entities[change.name] = _entity(payload_json(change.after))
        elif change.op is Op.UPDATE:
            body = entities[change.name].model_dump(by_alias=True)
            entities[change.name] = ObservedEntity.model_validate({**body, **payload_json(change.after)})
        elif change.op is Op.KICK:
            del entities[change.name]
        elif change.op in (Op.SEED, Op.RESEED):
            old = artifacts.get(change.name)
            artifacts[change.name] = ObservedArtifact(
                name=change.name,
                type=payload_json(change.after)["type"],
                workspace=payload_json(change.after)["workspace"],
                tags=tuple(payload_json(change.after)["tags"]),
                sha256=payload_json(change.after)["sha256"],
                size=payload_json(change.after)["size"],
                version=(old.version + 1) if old else 1,
                fingerprint=payload_json(change.after)["fingerprint"],
                created_by=old.created_by if old else operator,
                updated_by=operator,
            )
        elif change.op is Op.PROMOTE:
            artifacts[change.name] = artifacts[change.name].model_copy(update={"promoted": True})
        elif change.op is Op.DELETE_ARTIFACT:
            del artifacts[change.name]
        elif change.op is Op.SET_POLICY:
            policies[change.name] = payload_json(change.after)
    return ObservedRoom.model_validate(
        {
            "roomId": observed.room_id,
            "revision": observed.revision + 1,
            "entities": [e.model_dump(by_alias=True) for e in sorted(entities.values(), key=lambda e: e.id)],
            "artifacts": [
                a.model_dump(by_alias=True) for a in sorted(artifacts.values(), key=lambda a: a.name)
            ],
            "policies": policies,
        }
    )
