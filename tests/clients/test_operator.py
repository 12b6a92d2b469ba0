"""The CLI's client of the operator API against the real operator: JSON reads, `/events` as parsed events,
and errors that say what was tried, what failed and what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from roomoperator.clients.operator import OperatorClient, OperatorError, OperatorEvent
from tests.service.conftest import Operator, operator_settings, running_operator
from tests.support.roomserver import RoomServerHandle
from tests.support.servers import free_port, serve_app


@pytest.fixture
async def operator(roomserver: RoomServerHandle, tmp_path: Path) -> AsyncIterator[Operator]:
    async with running_operator(operator_settings(roomserver, tmp_path)) as handle:
        yield handle


async def test_reads_json_and_follows_events(operator: Operator) -> None:
    async with OperatorClient(operator.url) as client:
        status = await client.get_json("/status")
        audit = await client.get_json("/audit", params={"count": 5})
        events = client.events()
        first = await anext(events)
        await events.aclose()
    assert status["version"] == operator.settings.version
    assert isinstance(audit["entries"], list)
    assert isinstance(first, OperatorEvent)
    assert first.kind == "connected"
    assert first.data["message"] == "Connected to RoomOperator events"


async def test_an_error_answer_says_what_was_asked_and_what_came_back(operator: Operator) -> None:
    async with OperatorClient(operator.url) as client:
        with pytest.raises(OperatorError) as failed:
            await client.get_json("/no-such-path")
    assert str(failed.value).startswith(f"the operator at {operator.url} answered GET /no-such-path with 404")


async def test_no_operator_there_says_how_to_start_or_name_one() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with OperatorClient(url) as client:
        with pytest.raises(OperatorError) as read:
            await client.get_json("/status")
        with pytest.raises(OperatorError) as followed:
            await anext(client.events())
    for failed, path in ((read, "/status"), (followed, "/events")):
        message = str(failed.value)
        assert message.startswith(f"cannot reach the operator at {url} (GET {path}: ")
        assert "`roomop serve`" in message
        assert "--operator" in message


async def test_something_else_than_an_operator_is_named_as_such() -> None:
    async def text(_: object) -> PlainTextResponse:
        return PlainTextResponse("hello")

    async with (
        serve_app(Starlette(routes=[Route("/status", text)])) as url,
        OperatorClient(url) as client,
    ):
        with pytest.raises(OperatorError) as failed:
            await client.get_json("/status")
    assert "not JSON" in str(failed.value)
    assert f"is {url} the operator's API" in str(failed.value)
