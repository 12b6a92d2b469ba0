"""MCP providers known to the server, with the reference's status shape (`docs/roomserver.md`).

No provider client exists yet (it arrives with the hub issue), so a loaded provider stays `idle`: the
registry answers `/status/mcp` and the room state's `resources` correctly, with zero or more providers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final, Literal

ProviderState = Literal["idle", "connecting", "connected", "error"]
RESOURCE_TYPE: Final = "mcp-tool"


@dataclass
class Provider:
    id: str
    url: str
    visibility: str
    state: ProviderState = "idle"
    attempts: int = 0
    last_change_at: int = 0
    last_error: str | None = None
    next_retry_at: int | None = None

    def status(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "state": self.state,
            "attempts": self.attempts,
            "lastChangeAt": self.last_change_at,
            "lastError": self.last_error,
            "nextRetryAt": self.next_retry_at,
        }

    def resource(self) -> dict[str, Any]:
        return {
            "name": self.id,
            "type": RESOURCE_TYPE,
            "status": self.state,
            "config": {"endpoint": self.url},
        }


class ProviderRegistry:
    """Provider configs by id; loading one again replaces its URL (the reference ignored a changed URL)."""

    def __init__(self) -> None:
        self._providers: dict[str, Provider] = {}

    def load(self, providers: list[tuple[str, str, str]]) -> int:
        now_ms = int(time.time() * 1000)
        for provider_id, url, visibility in providers:
            self._providers[provider_id] = Provider(provider_id, url, visibility, last_change_at=now_ms)
        return len(providers)

    def statuses(self) -> list[dict[str, Any]]:
        return [p.status() for p in self._providers.values()]

    def resources(self) -> list[dict[str, Any]]:
        return [p.resource() for p in self._providers.values()]
