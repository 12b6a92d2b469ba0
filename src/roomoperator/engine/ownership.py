"""Who the operator is to the room server, and recording it as the manager of the rooms it writes.

The room server records the writer of every artifact version (`createdBy`, `updatedBy`): for the
operator's writes, its token's name. The planner deletes an undeclared artifact only when that name is
the operator's (`planning.planner.is_operators`), so PLANNING needs it, read once per client from
`GET /auth/whoami` (the client caches it) and only when a plan depends on it: when the room holds an
undeclared artifact with a known writer, or when the engine claims rooms.

The service's engine claims each room it writes (`PUT /rooms/{roomId}/manager`, once: the state then
names it, so a converged room costs no request for it); the one-shot CLI never claims, and refuses a
room an operator manages (`cli/engine.py`). A token that may not claim (403) is not asked again.
"""

from __future__ import annotations

from roomoperator.clients.errors import Forbidden, NotFound, RoomServerError, Unauthorized
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.executing import unauthorized
from roomoperator.engine.outcome import RunDraft
from roomoperator.model.observed import ObservedRoom
from roomoperator.spec.models import RoomSpec


def _depends_on_identity(spec: RoomSpec, observed: ObservedRoom) -> bool:
    declared = {a.name for a in spec.spec.artifacts}
    return any(a.name not in declared and a.created_by is not None for a in observed.artifacts)


class Ownership:
    """The operator's name for planning, and its claim on the rooms it writes (when `claim`)."""

    def __init__(self, client: RoomServerClient, *, claim: bool = False, url: str | None = None) -> None:
        self.client = client
        self.claim = claim
        self.url = url
        self._claim_refused = False

    async def operator(self, run: RunDraft, observed: ObservedRoom) -> str | None:
        """The operator's token name when the plan depends on it (None: not needed, or not known, in which
        case nothing undeclared counts as the operator's)."""
        if not (self.claim or _depends_on_identity(run.spec, observed)):
            return None
        try:
            return (await self.client.whoami()).name
        except Unauthorized as exc:
            raise unauthorized(exc) from exc
        except NotFound:
            return None  # a server without /auth/whoami records no writers either
        except RoomServerError as exc:
            run.warn(f"The operator's token name is unknown ({exc}): no undeclared artifact is deleted")
            return None

    async def claim_room(self, run: RunDraft, observed: ObservedRoom, operator: str | None) -> None:
        """Record the operator as the room's manager, with the spec's `membership`, unless the state
        already says so."""
        manager = observed.manager
        if not self.claim or self._claim_refused or operator is None:
            return
        membership = run.spec.spec.membership
        if manager is not None and (manager.name, manager.url, manager.membership) == (
            operator,
            self.url,
            membership,
        ):
            return
        try:
            await self.client.put_manager(
                observed.room_id, name=operator, url=self.url, membership=membership
            )
        except Forbidden as exc:
            self._claim_refused = True
            run.warn(f"Cannot record the operator as the manager of rooms (needs room:admin): {exc}")
            return
        except RoomServerError as exc:
            run.warn(f"Recording the operator as the manager of {observed.room_id} failed: {exc}")
            return
        if manager is not None and manager.name != operator:
            run.warn(f"Room {observed.room_id} was managed by {manager.name!r}; {operator!r} manages it now")
