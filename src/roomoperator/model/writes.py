"""One room write the engine makes, in the form both ways of sending it share: the single endpoint, or an
item of the room server's batch endpoint (`POST /room/{roomId}/batch`, `docs/contract.md`).

A `Write` is the item as the batch body carries it (`op` plus its one payload key); the room-server client
sends it either way (`clients/roomserver.py`), so the engine builds each change's write once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from roomcontract.batch import PAYLOAD_KEY, BatchOp


@dataclass(frozen=True)
class Write:
    """One write to a room: `op` and its payload (an entity body, policy values, a manager, a name)."""

    op: BatchOp
    """The batch item op (the shared contract's, `roomcontract/batch.py`)."""
    payload: Any

    @classmethod
    def put_entity(cls, body: dict[str, Any]) -> Write:
        """An entity upsert; `body` is the single PUT's body, `entityId` included."""
        return cls(BatchOp.PUT_ENTITY, body)

    @classmethod
    def remove_entity(cls, entity_id: str) -> Write:
        return cls(BatchOp.REMOVE_ENTITY, entity_id)

    @classmethod
    def put_policies(cls, values: dict[str, Any]) -> Write:
        return cls(BatchOp.PUT_POLICIES, values)

    @classmethod
    def put_manager(cls, manager: dict[str, Any]) -> Write:
        return cls(BatchOp.PUT_MANAGER, manager)

    @classmethod
    def delete_artifact(cls, name: str) -> Write:
        return cls(BatchOp.DELETE_ARTIFACT, name)

    @classmethod
    def promote_artifact(cls, name: str) -> Write:
        return cls(BatchOp.PROMOTE_ARTIFACT, name)

    def to_item(self) -> dict[str, Any]:
        """The batch item (`{"op": ..., <key>: payload}`)."""
        return {"op": self.op.value, PAYLOAD_KEY[self.op]: self.payload}
