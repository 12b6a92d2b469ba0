"""Who made each room event (`docs/contract.md`, "Events"), the same on both sides: the room server keeps
the actor of every event it logs (the `X-Entity-Id` member of a REST write, the hub session's entity, else
the token's name) and adds it to `GET /events` only when the client asks, so the reference envelope is
unchanged for every other client."""

from __future__ import annotations

from typing import Final

EVENT_ACTOR_FEATURE: Final = "events.actor.v1"
"""Listed in the room server's `GET /auth/whoami` features when `GET /events` can name each event's actor."""
WITH_ACTOR: Final = "withActor"
"""The `GET /events` query parameter (`1`) that adds `"actor"` to each frame's envelope."""
ACTOR_KEY: Final = "actor"
"""The envelope key of the actor (null for an event logged before actors were kept)."""
