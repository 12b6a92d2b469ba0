"""`GET /events`: Server-Sent Events of every stored room event, resumable with `Last-Event-ID`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Final

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from roomserver.api.dependencies import ERRORS, Reader, Server
from roomserver.domain.events import PING_FRAME, connected_frame
from roomserver.domain.identifiers import check_room_id
from roomserver.domain.timestamps import now_iso
from roomserver.errors import bad_request
from roomserver.server import RoomServer
from roomserver.storage import repository

router = APIRouter(tags=["events"], responses=ERRORS)

_BATCH: Final = 500
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _stream(server: RoomServer, room_id: str | None, after: int) -> AsyncIterator[str]:
    yield connected_frame(now_iso())
    cursor = after
    ping = server.settings.sse_ping_seconds
    while not server.feed.closing.is_set():
        known = server.feed.latest
        batch = await server.db.run(repository.events_after, cursor, room_id, limit=_BATCH)
        for event in batch:
            yield event.sse_frame()
        if len(batch) == _BATCH:
            cursor = batch[-1].seq
            continue
        # Every event up to `known` was committed before this read, so the cursor may skip to it.
        cursor = max(known, batch[-1].seq if batch else cursor)
        if not await server.feed.wait_beyond(cursor, within=ping) and not server.feed.closing.is_set():
            yield PING_FRAME


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE: connected, then events"}},
)
async def events(
    server: Server,
    _: Reader,
    room_id: Annotated[str | None, Query(alias="roomId", description="only this room's events")] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this event id")] = None,
) -> StreamingResponse:
    """`connected` first, then every room event (`id:` = its sequence number); `: ping` every 10 s."""
    if room_id is not None:
        check_room_id(room_id)
    after = 0
    if last_event_id is not None:
        if not last_event_id.strip().isdigit():
            raise bad_request("INVALID_LAST_EVENT_ID", "Last-Event-ID must be a non-negative integer")
        after = int(last_event_id)
    else:
        after = server.feed.latest
    return StreamingResponse(
        _stream(server, room_id, after), media_type="text/event-stream; charset=utf-8", headers=_SSE_HEADERS
    )
