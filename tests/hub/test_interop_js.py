"""Interop with Microsoft's official JavaScript client (`@microsoft/signalr`, pinned in
`tests/hub/node/package-lock.json`, installed by `make unit` with `npm ci`), run by node against a real
room server over WebSockets: negotiate, token, Join, ListEntities, SendToRoom with `message` and `event`
on a second client, a denied command with the reference's error text, a direct message, Leave, presence
in the room state. The other transports run the same script (`test_transports.py`)."""

from __future__ import annotations

from tests.hub.nodejs import run_interop
from tests.support.roomserver import RoomServerHandle


async def test_the_official_javascript_client_speaks_to_the_hub_unchanged(server: RoomServerHandle) -> None:
    await run_interop(server, "WebSockets")
