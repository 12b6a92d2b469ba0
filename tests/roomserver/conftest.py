"""Fixtures: a real room server app, called in-process over ASGI (`client`) or over a socket (`server`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.roomserver import FULL_SCOPES, RoomServerHandle, running_roomserver, write_tokens


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    """A room server on a random 127.0.0.1 port (for streams and real-socket behaviour)."""
    async with running_roomserver(tmp_path / "data") as handle:
        yield handle


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    """The app with its lifespan entered (storage in `tmp_path/data`); `app.state.token` has all scopes."""
    tokens_file, token, _ = write_tokens(tmp_path / "data", FULL_SCOPES)
    application = create_app(ServerSettings(data_dir=tmp_path / "data", tokens_file=tokens_file))
    application.state.token = token
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client calling `app` in-process (httpx.ASGITransport), authenticated with all scopes."""
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {app.state.token}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://roomserver", headers=headers) as http:
        yield http
