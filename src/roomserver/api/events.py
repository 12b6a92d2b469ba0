"""`GET /events`: Server-Sent Events of every stored room event, resumable with `Last-Event-ID`.

`sse-starlette` writes the frames and the keep-alive pings; the bytes are the ones the reference clients
read: LF line ends, `event: connected` first, then per room event `id: <seq>`, `event: event` and the
RoomEvent envelope as compact JSON `data`, and a `: ping` comment every `sse_ping_seconds`. With
`withActor=1` each envelope also names who made the event (`"actor"`, `roomcontract.actors`); without
it the envelope is the reference's.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from roomcontract.actors import WITH_ACTOR
from roomserver.api.dependencies import ERRORS, Reader, Server
from roomserver.domain.events import RoomEvent
from roomserver.domain.identifiers import check_room_id
from roomserver.domain.limits import InputError, parse_count
from roomserver.domain.timestamps import now_iso
from roomserver.errors import bad_request
from roomserver.server import RoomServer
from roomserver.storage import repository

router = APIRouter(tags=["events"], responses=ERRORS)

_BATCH: Final = 500
_SEP: Final = "\n"
_SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _data(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


def event_frame(event: RoomEvent, *, with_actor: bool = False) -> ServerSentEvent:
    """A stored room event: its sequence number is the SSE `id`, which `Last-Event-ID` resumes after."""
    envelope = event.envelope(with_actor=with_actor)  # `event: event`, or `event: message` for a message
    return ServerSentEvent(_data(envelope), event=envelope["type"], id=str(event.seq), sep=_SEP)


def connected_frame(timestamp: str) -> ServerSentEvent:
    body = {
        "type": "connected",
        "source": "roomserver",
        "timestamp": timestamp,
        "message": "Connected to RoomServer events",
    }
    return ServerSentEvent(_data(body), event="connected", sep=_SEP)


def ping_frame() -> ServerSentEvent:
    return ServerSentEvent(comment="ping", sep=_SEP)


async def _stream(
    server: RoomServer, room_id: str | None, after: int, *, with_actor: bool
) -> AsyncIterator[ServerSentEvent]:
    yield connected_frame(now_iso())
    cursor = after
    feed = server.feed
    while not feed.closing.is_set():
        known = feed.latest
        batch = await server.db.run(repository.events_after, cursor, room_id, limit=_BATCH)
        for event in batch:
            yield event_frame(event, with_actor=with_actor)
        if len(batch) == _BATCH:
            cursor = batch[-1].seq
            continue
        # Every event up to `known` was committed before this read, so the cursor may skip to it.
        cursor = max(known, batch[-1].seq if batch else cursor)
        while not await feed.wait_beyond(cursor, within=server.settings.sse_ping_seconds):
            if feed.closing.is_set():
                return


@router.get(
    "/events",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "SSE: connected, then events"}},
)
async def events(
    server: Server,
    _: Reader,
    room_id: Annotated[str | None, Query(alias="roomId", description="only this room's events")] = None,
    with_actor: Annotated[
        bool, Query(alias=WITH_ACTOR, description="add each event's `actor` (who made it) to its envelope")
    ] = False,
    last_event_id: Annotated[str | None, Header(description="resume after this event id")] = None,
) -> EventSourceResponse:
    """`connected` first, then every room event (`id:` = its sequence number); `: ping` every 10 s. The
    actor is shown to the same `room:read` tokens that read the events."""
    if room_id is not None:
        check_room_id(room_id)
    after = server.feed.latest
    if last_event_id is not None:
        try:
            after = parse_count(last_event_id, field="Last-Event-ID")
        except InputError as exc:
            raise bad_request("INVALID_LAST_EVENT_ID", str(exc)) from None
    return EventSourceResponse(
        _stream(server, room_id, after, with_actor=with_actor),
        media_type="text/event-stream; charset=utf-8",
        headers=_SSE_HEADERS,
        ping=server.settings.sse_ping_seconds,
        ping_message_factory=ping_frame,
        sep=_SEP,
    )
