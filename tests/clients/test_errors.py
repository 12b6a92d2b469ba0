"""The one error mapper, through the client's funnel on real sockets: statuses, timeouts, refused
connections and redirect loops each become the `RoomServerError` subclass the engine acts on."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Route

from roomoperator.clients.errors import (
    Conflict,
    Forbidden,
    NotFound,
    Rejected,
    RoomServerError,
    Transient,
    Unauthorized,
    Unreachable,
)
from roomoperator.clients.roomserver import RoomServerClient
from tests.support.faults import fault_proxy
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port, serve_app

ENTITY = r"/room/room-err-01/entities/E-agent-1"
BODY = {"entityId": "E-agent-1", "kind": "agent"}


@pytest.mark.parametrize(
    ("status", "kind", "transient"),
    [
        (400, Rejected, False),
        (401, Unauthorized, False),
        (403, Forbidden, False),
        (404, NotFound, False),
        (409, Conflict, False),
        (422, Rejected, False),
        (429, Transient, True),
        (500, Transient, True),
        (503, Transient, True),
    ],
)
async def test_statuses_map_to_their_error_class(
    roomserver: RoomServerHandle, status: int, kind: type[RoomServerError], transient: bool
) -> None:
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, token=roomserver.token) as client,
    ):
        proxy.inject("PUT", ENTITY, status=status)
        with pytest.raises(RoomServerError) as failed:
            await client.put_entity("room-err-01", "E-agent-1", BODY)
    assert type(failed.value) is kind
    assert (failed.value.status, failed.value.code, failed.value.transient) == (
        status,
        "INJECTED_FAULT",
        transient,
    )
    assert failed.value.message == f"injected {status}"


async def test_a_timeout_is_unreachable_and_transient(roomserver: RoomServerHandle) -> None:
    seen: list[int | None] = []
    async with (
        fault_proxy(roomserver.url) as (proxy, url),
        RoomServerClient(url, timeout=0.2, observer=lambda status, _: seen.append(status)) as client,
    ):
        proxy.inject("GET", r"/room/room-err-01/state", hang=True)
        with pytest.raises(Unreachable) as failed:
            await client.get_state("room-err-01")
    assert (failed.value.status, failed.value.code, failed.value.transient) == (
        None,
        "ROOM_SERVER_UNREACHABLE",
        True,
    )
    assert failed.value.message.startswith(f"GET /room/room-err-01/state at {url} timed out: ")
    assert seen == [None]


async def test_a_refused_connection_is_unreachable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with RoomServerClient(url) as client:
        with pytest.raises(Unreachable) as failed:
            await client.whoami()
        assert await client.health() is False
    assert failed.value.transient
    assert failed.value.message == (
        f"GET /auth/whoami: cannot connect to the room server at {url} (connection refused); check that"
        " it is running there, or give its URL with --server / RoomServer__BaseUrl"
    )


async def test_a_url_without_a_scheme_says_so() -> None:
    async with RoomServerClient("127.0.0.1:5000") as client:
        with pytest.raises(RoomServerError) as failed:
            await client.get_state("room-err-01")
    assert failed.value.code == "INVALID_URL"
    assert "is not an http:// or https:// URL" in failed.value.message
    assert "http://127.0.0.1:5000" in failed.value.message


async def test_a_redirect_loop_is_an_invalid_response_not_worth_retrying() -> None:
    async def loop(request: Request) -> RedirectResponse:
        return RedirectResponse(str(request.url))

    async with (
        serve_app(Starlette(routes=[Route("/{path:path}", loop)])) as url,
        RoomServerClient(url) as client,
    ):
        with pytest.raises(RoomServerError) as failed:
            await client.mcp_status()
    assert (failed.value.status, failed.value.code, failed.value.transient) == (
        None,
        "INVALID_RESPONSE",
        False,
    )
