"""SignalR negotiation (`POST /room/negotiate`): the connection ids it hands out and the answer's shape.

Version 1 answers a `connectionId` (public) and a `connectionToken` (the secret the WebSocket URL's `id`
carries); version 0 answers only the `connectionId`, which is then the `id`. The three transports of
`transports.py` are offered, with the formats ASP.NET Core advertises for them (the JSON protocol is
Text; a long poll answers the same bytes in either format). A handed-out id belongs to the token that
negotiated it (another token's claim is 403), waits at most `PENDING_SECONDS` for its transport's first
request and is claimed once; at most `MAX_PENDING` wait at a time (the oldest goes first), so a client
that negotiates without connecting costs bounded memory. Ids and tokens are 128 random bits.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from typing import Any, Final

from roomserver.errors import RoomServerError

PENDING_SECONDS: Final = 60.0
MAX_PENDING: Final = 10_000
TRANSPORTS: Final = [
    {"transport": "WebSockets", "transferFormats": ["Text"]},
    {"transport": "ServerSentEvents", "transferFormats": ["Text"]},
    {"transport": "LongPolling", "transferFormats": ["Text", "Binary"]},
]


def unknown_connection() -> RoomServerError:
    return RoomServerError(404, "No Connection with that ID", code="CONNECTION_NOT_FOUND")


def foreign_connection() -> RoomServerError:
    return RoomServerError(403, "the connection belongs to another token", code="PERM_DENIED")


class Negotiations:
    """Connection ids waiting for their WebSocket, by the value the WebSocket URL's `id` must carry."""

    def __init__(self) -> None:
        self._pending: OrderedDict[str, tuple[str, str, float]] = OrderedDict()

    def issue(self, version: int, owner: str) -> dict[str, Any]:
        """The negotiate answer for `owner` (a token's name) asking for `version` (the server speaks 0, 1)."""
        self._expire(time.monotonic())
        connection_id = secrets.token_urlsafe(16)
        answer: dict[str, Any] = {"negotiateVersion": min(max(version, 0), 1), "connectionId": connection_id}
        key = connection_id
        if version >= 1:
            key = secrets.token_urlsafe(16)
            answer["connectionToken"] = key
        answer["availableTransports"] = TRANSPORTS
        self._pending[key] = (connection_id, owner, time.monotonic() + PENDING_SECONDS)
        while len(self._pending) > MAX_PENDING:
            self._pending.popitem(last=False)
        return answer

    def claim(self, key: str, owner: str) -> str:
        """The connection id negotiated for `key` by `owner`, once (404 when unknown, used or expired; 403
        for another owner, and the id stays claimable by its own)."""
        found = self._pending.get(key)
        if found is None or found[2] < time.monotonic():
            raise unknown_connection()
        if found[1] != owner:
            raise foreign_connection()
        del self._pending[key]
        return found[0]

    def _expire(self, now: float) -> None:
        while self._pending:
            key, (_, _, deadline) = next(iter(self._pending.items()))
            if deadline >= now:
                return
            del self._pending[key]
