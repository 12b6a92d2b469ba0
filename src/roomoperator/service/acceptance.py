"""The operator's acceptance rules, in the one function every way a spec arrives goes through: `/apply`
(and its dry runs), `roomop up SPEC`, and reconcile-now of the stored spec.

A spec offered for a managed room must pass the upgrade check against the room's desired spec (a
different spec needs a greater `metadata.version`); reconcile-now needs a managed room. A refusal is
`Refused`, which each edge turns into its own answer (a 400 or 404 body, a message and exit 1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from roomoperator.model.codes import ApiCode
from roomoperator.service.rooms import RoomView
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.upgrade import check_upgrade


class Refused(Exception):
    """A spec or request the operator does not accept; `errors` say why, in the reference's words."""

    def __init__(
        self,
        code: ApiCode,
        errors: list[str],
        *,
        room_id: str,
        offered: int | None = None,
        desired: int | None = None,
    ) -> None:
        super().__init__("; ".join(errors))
        self.code = code
        self.errors = errors
        self.room_id = room_id
        self.offered = offered
        self.desired = desired


@dataclass(frozen=True)
class Accepted:
    """What to run (`spec` None: the room's stored desired spec) and what the caller should read."""

    spec: RoomSpec | None
    warnings: list[str] = field(default_factory=list)


def accept(room_id: str, offered: RoomSpec | None, view: RoomView | None) -> Accepted:
    """Accept `offered` for the room `view` shows (None: the room is unknown), or raise `Refused`.

    `offered` None asks to run the desired spec again, which only a managed room has.
    """
    managed = view is not None and view.managed
    desired = view.spec if view is not None and managed else None
    if offered is None:
        if desired is None:
            raise Refused(ApiCode.NOT_FOUND, [f"Room {room_id} not found"], room_id=room_id)
        return Accepted(spec=None)
    if desired is None:
        return Accepted(spec=offered)
    report = check_upgrade(desired, offered)
    if not report.ok:
        raise Refused(
            ApiCode.SPEC_UPGRADE_REJECTED,
            report.errors,
            room_id=room_id,
            offered=report.new_version,
            desired=report.current_version,
        )
    return Accepted(spec=offered, warnings=report.warnings)
