"""The batch endpoint's wire vocabulary (`POST /room/{roomId}/batch`, `docs/contract.md`, "Batch"), the
same on both sides: the feature name `GET /auth/whoami` announces, the item ops and each op's payload key,
and the request's limits."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

BATCH_FEATURE: Final = "batch.v1"
"""The `features` entry of `GET /auth/whoami` on a server with the batch endpoint."""

MAX_BATCH_ITEMS: Final = 1_000
"""Most items of one batch request (more: 400 `BATCH_TOO_LARGE`, nothing applied)."""

MAX_BATCH_BYTES: Final = 4 * 1024 * 1024
"""Largest batch body the server reads by default (more: 413 `PAYLOAD_TOO_LARGE`)."""


class BatchOp(StrEnum):
    """The ops of batch items (their wire names)."""

    PUT_ENTITY = "putEntity"
    REMOVE_ENTITY = "removeEntity"
    PUT_POLICIES = "putPolicies"
    PUT_MANAGER = "putManager"
    DELETE_ARTIFACT = "deleteArtifact"
    PROMOTE_ARTIFACT = "promoteArtifact"


PAYLOAD_KEY: Final[dict[BatchOp, str]] = {
    BatchOp.PUT_ENTITY: "entity",
    BatchOp.REMOVE_ENTITY: "entityId",
    BatchOp.PUT_POLICIES: "policies",
    BatchOp.PUT_MANAGER: "manager",
    BatchOp.DELETE_ARTIFACT: "name",
    BatchOp.PROMOTE_ARTIFACT: "name",
}
"""The one key of an item besides `op`: the single endpoint's body (or its path parameter)."""
