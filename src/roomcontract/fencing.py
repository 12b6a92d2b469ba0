"""Fencing tokens between operator replicas and the room server (`docs/contract.md`, "Fencing").

An operator replica owns a room through a lease in its store; the lease's epoch only grows, and each change
of owner increments it. The replica sends the epoch on every write it makes to the room, and the room
server refuses a write whose epoch is older than one it has already seen for that room: a replica that
lost its lease (paused past it, cut off from its store) cannot write over the new owner's work.
"""

from __future__ import annotations

from typing import Final

FENCE_HEADER: Final = "X-RoomOp-Fence"
"""The request header carrying the writer's lease epoch for the room it writes to."""
FENCING_FEATURE: Final = "fencing.v1"
"""Listed in the room server's `GET /auth/whoami` features when it checks fencing tokens."""
FENCE_MAX: Final = 2**63 - 1
"""The largest epoch (a signed 64-bit column on both sides)."""
_MAX_DIGITS: Final = len(str(FENCE_MAX))


def parse_fence(value: str) -> int:
    """The epoch in a `X-RoomOp-Fence` value: ASCII digits, 1 to 2**63-1; ValueError otherwise."""
    text = value.strip()
    if not text or len(text) > _MAX_DIGITS or not (text.isascii() and text.isdigit()):
        raise ValueError(f"{FENCE_HEADER} must be a whole number from 1 to {FENCE_MAX}, not {value[:40]!r}")
    epoch = int(text)
    if not 1 <= epoch <= FENCE_MAX:
        raise ValueError(f"{FENCE_HEADER} must be a whole number from 1 to {FENCE_MAX}, not {value[:40]!r}")
    return epoch
