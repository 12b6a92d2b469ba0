"""SignalR negotiation (`POST /room/negotiate`): the connection ids it hands out and the answer's shape.

Version 1 answers a `connectionId` (public) and a `connectionToken` (the secret the WebSocket URL's `id`
carries); version 0 answers only the `connectionId`, which is then the `id`. Only the WebSockets
transport is offered, with the Text format (the JSON protocol). A handed-out id waits at most
`PENDING_SECONDS` for its WebSocket and is used once; at most `MAX_PENDING` wait at a time (the oldest
goes first), so a client that negotiates without connecting costs bounded memory.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Any, Final

PENDING_SECONDS: Final = 60.0
MAX_PENDING: Final = 10_000
TRANSPORTS: Final = [{"transport": "WebSockets", "transferFormats": ["Text"]}]


class Negotiations:
    """Connection ids waiting for their WebSocket, by the value the WebSocket URL's `id` must carry."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def issue(self, version: int) -> dict[str, Any]:
        """The negotiate answer for a client asking for `version` (the server speaks 0 and 1)."""
        self._expire(time.monotonic())
        connection_id = secrets.token_urlsafe(16)
        answer: dict[str, Any] = {"negotiateVersion": min(max(version, 0), 1), "connectionId": connection_id}
        key = connection_id
        if version >= 1:
            key = secrets.token_urlsafe(16)
            answer["connectionToken"] = key
        answer["availableTransports"] = TRANSPORTS
        self._pending[key] = (connection_id, time.monotonic() + PENDING_SECONDS)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return answer

    def claim(self, key: str) -> str | None:
        """The connection id negotiated for `key`, once; None when unknown, used or expired."""
        found = self._pending.pop(key, None)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def _expire(self, now: float) -> None:
        while self._pending:
            key, (_, deadline) = next(iter(self._pending.items()))
            if deadline >= now:
                return
            del self._pending[key]
