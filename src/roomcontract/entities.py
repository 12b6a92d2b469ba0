"""Values of an entity declaration that both sides check: its kind, its visibility, who may command it.

`none` is the reference clients' way to say that nobody may command the entity (the reference room
server accepted it and denied every command); both sides accept it with that meaning.
"""

from __future__ import annotations

from typing import Final, Literal

CommandsFrom = Literal["any", "orchestrator", "owner", "none"]
COMMANDS_FROM: Final[tuple[CommandsFrom, ...]] = ("any", "orchestrator", "owner", "none")

EntityKind = Literal["human", "agent", "npc", "orchestrator"]
ENTITY_KINDS: Final[tuple[EntityKind, ...]] = ("human", "agent", "npc", "orchestrator")

Visibility = Literal["public", "team", "owner"]
VISIBILITIES: Final[tuple[Visibility, ...]] = ("public", "team", "owner")

Membership = Literal["closed", "open"]
"""Who may join a managed room over the hub: only the declared roster (`closed`), or anyone with a token
too (`open`). The spec's `membership`; the operator records it with the room's manager."""
