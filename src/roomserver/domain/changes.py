"""The changes of the batch endpoint (`POST /room/{roomId}/batch`): the scope each op needs (the ops, their
payload keys and the limits are the shared contract's, `roomcontract/batch.py`), and each change as the
single endpoints make it (`docs/roomserver.md`, "Batched writes").

A change here is already validated: `api/batch.py` reads each item with the single endpoint's own body
model and checks, and `storage/repository.py` applies a list of them in one transaction, each through the
single endpoint's own repository function, so a batch item and its single endpoint cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from roomcontract.batch import BatchOp
from roomcontract.scopes import ADMIN, ARTIFACTS_WRITE, ENTITIES_WRITE, POLICIES_WRITE, Scope
from roomserver.domain.entities import Entity
from roomserver.errors import RoomServerError, artifact_error

SCOPE: Final[dict[BatchOp, Scope]] = {
    BatchOp.PUT_ENTITY: ENTITIES_WRITE,
    BatchOp.REMOVE_ENTITY: ENTITIES_WRITE,
    BatchOp.PUT_POLICIES: POLICIES_WRITE,
    BatchOp.PUT_MANAGER: ADMIN,
    BatchOp.DELETE_ARTIFACT: ARTIFACTS_WRITE,
    BatchOp.PROMOTE_ARTIFACT: ARTIFACTS_WRITE,
}
"""The scope of each op: the one its single endpoint requires."""


@dataclass(frozen=True)
class PutEntity:
    entity: Entity


@dataclass(frozen=True)
class RemoveEntity:
    entity_id: str


@dataclass(frozen=True)
class PutPolicies:
    changes: dict[str, Any]  # keyword arguments of `RoomPolicies.updated`


@dataclass(frozen=True)
class PutManager:
    manager: dict[str, Any]  # `{"name", "url", "membership"}`, as `repository.set_manager` records it


@dataclass(frozen=True)
class DeleteArtifact:
    name: str


@dataclass(frozen=True)
class PromoteArtifact:
    name: str


Change = PutEntity | RemoveEntity | PutPolicies | PutManager | DeleteArtifact | PromoteArtifact


def entity_not_found(room_id: str, entity_id: str) -> RoomServerError:
    """404 `ENTITY_NOT_FOUND` of `DELETE /room/{roomId}/entities/{entityId}` (and its batch item)."""
    return RoomServerError(404, f"entity {entity_id} is not declared in {room_id}", code="ENTITY_NOT_FOUND")


def artifact_not_found(message: str = "Artifact not found") -> RoomServerError:
    """404 E2 `ArtifactNotFound` of the artifact routes (and their batch items)."""
    return artifact_error(404, "ArtifactNotFound", message)
