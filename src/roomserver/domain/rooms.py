"""Room lifecycle: `init` until a first entity is declared, `active` while any is, `ended` after the last."""

from __future__ import annotations

from typing import Final, Literal

RoomStatus = Literal["init", "active", "paused", "ended"]
UNDECLARED: Final[RoomStatus] = "init"


def status_after_join(status: RoomStatus) -> RoomStatus:
    """A join activates a new or ended room; a paused room stays paused."""
    return "active" if status in ("init", "ended") else status


def status_after_leave(status: RoomStatus, *, remaining: int) -> RoomStatus:
    """The last leave ends an active room (as the reference does when its last session leaves)."""
    return "ended" if remaining == 0 and status == "active" else status
