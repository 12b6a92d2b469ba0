"""Who the operator is to the room server, and recording it as the manager of the rooms it writes.

The room server records the writer of every artifact version (`createdBy`, `updatedBy`): for the
operator's writes, its token's name. The planner deletes an undeclared artifact only when that name is
the operator's (`planning.planner.is_operators`), so PLANNING needs it, read once per client from
`GET /auth/whoami` (the client caches it) and only when a plan depends on it: when the room holds an
undeclared artifact with a known writer, or when the engine claims rooms.

The service's engine claims each room it writes (`PUT /rooms/{roomId}/manager`, once: the state then
names it, so a converged room costs no request for it; against a server with `batch.v1` the claim is the
first item of the run's first batch, costing no request of its own); the one-shot CLI never claims, and
refuses a room an operator manages (`cli/engine.py`). A token that may not claim (403) is not asked again.
"""

from __future__ import annotations

from roomoperator.clients.errors import Forbidden, NotFound, RoomServerError, Unauthorized
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.clients.writing import manager_body
from roomoperator.engine.executing import unauthorized
from roomoperator.engine.outcome import RunDraft
from roomoperator.model.observed import ObservedRoom
from roomoperator.model.writes import Write
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

    def claim_write(self, run: RunDraft, observed: ObservedRoom, operator: str | None) -> Write | None:
        """The write recording the operator as the room's manager, with the spec's `membership`; None when
        the state already says so (or the engine does not claim)."""
        manager = observed.manager
        if not self.claim or self._claim_refused or operator is None:
            return None
        membership = run.spec.spec.membership
        if manager is not None and (manager.name, manager.url, manager.membership) == (
            operator,
            self.url,
            membership,
        ):
            return None
        return Write.put_manager(manager_body(name=operator, url=self.url, membership=membership))

    async def claim_room(self, run: RunDraft, observed: ObservedRoom, operator: str | None) -> None:
        """Make the claim now (its own request), when one is needed."""
        write = self.claim_write(run, observed, operator)
        if write is None:
            return
        try:
            await self.client.write(observed.room_id, write)
        except RoomServerError as exc:
            self.claimed(run, observed, operator, exc)
        else:
            self.claimed(run, observed, operator, None)

    def claimed(
        self, run: RunDraft, observed: ObservedRoom, operator: str | None, error: BaseException | None
    ) -> None:
        """Say what the claim's answer means (`error`: what it met, alone or as a batch's first item)."""
        if isinstance(error, Forbidden):
            self._claim_refused = True
            run.warn(f"Cannot record the operator as the manager of rooms (needs room:admin): {error}")
        elif error is not None:
            run.warn(f"Recording the operator as the manager of {observed.room_id} failed: {error}")
        elif observed.manager is not None and observed.manager.name != operator:
            previous = observed.manager.name
            run.warn(f"Room {observed.room_id} was managed by {previous!r}; {operator!r} manages it now")
