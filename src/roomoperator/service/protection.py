"""What the engine must never remove from a room: the names `protect: true` holds, across revisions.

A name (an entity id or an artifact name) is protected while the latest revision that declared it said
`protect: true`: removing a protected item from the spec does not unprotect it, any number of runs
later; a revision that declares it with `protect: false` (or without `protect`) does. The answer comes
from the room's revisions, not from the desired spec alone.

Cache: per room, each declared name's flag with the revision that set it, read from the store's history
once per room and process (the first run or dry run of the room), then updated in memory by every new
revision (`declare`); merging by revision number makes the order of `declare` and the first read
irrelevant. A room whose first revision is declared has no history to read (a new room's first run costs
no read). Its frozenset is rebuilt only after a change, so a run costs no store round-trip.
"""

from __future__ import annotations

from roomoperator.spec.models import RoomSpec
from roomoperator.store import Store


def declared(spec: RoomSpec) -> dict[str, bool]:
    """Each name `spec` declares, with its protect flag."""
    flags = {entity.id: entity.protect for entity in spec.spec.entities}
    for artifact in spec.spec.artifacts:
        flags[artifact.name] = flags.get(artifact.name, False) or artifact.protect
    return flags


class Protection:
    """The protected names of every room, from its revisions."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._flags: dict[str, dict[str, tuple[int, bool]]] = {}
        self._loaded: set[str] = set()
        self._names: dict[str, frozenset[str]] = {}

    def declare(self, room_id: str, revision: int, spec: RoomSpec) -> None:
        """Revision `revision` of a room is `spec`: its declarations are now the latest for its names."""
        self._merge(room_id, revision, spec)
        if revision == 1:  # revisions start at 1: there is none before it to read
            self._loaded.add(room_id)

    async def names(self, room_id: str) -> frozenset[str]:
        """The names protected in `room_id` now."""
        if room_id not in self._loaded:
            for version in await self._store.history(room_id):
                self._merge(room_id, version.revision, RoomSpec.model_validate(version.spec))
            self._loaded.add(room_id)
        names = self._names.get(room_id)
        if names is None:
            flags = self._flags.get(room_id, {})
            names = self._names[room_id] = frozenset(name for name, (_, on) in flags.items() if on)
        return names

    def _merge(self, room_id: str, revision: int, spec: RoomSpec) -> None:
        flags = self._flags.setdefault(room_id, {})
        for name, on in declared(spec).items():
            known = flags.get(name)
            if known is None or known[0] <= revision:
                flags[name] = (revision, on)
        self._names.pop(room_id, None)
