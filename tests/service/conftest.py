"""Fixtures that run the real room server and the real operator on 127.0.0.1 random ports."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from roomoperator.service.app import create_app
from roomoperator.service.controller import Controller
from roomoperator.settings import OperatorSettings
from tests.support.roomserver import RoomServerHandle, running_roomserver
from tests.support.servers import serve_app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"


@dataclass
class Operator:
    """An operator app served over real HTTP, with a client and a handle on its controller."""

    url: str
    app: FastAPI
    http: httpx.AsyncClient
    settings: OperatorSettings

    @property
    def controller(self) -> Controller:
        controller: Controller = self.app.state.controller
        return controller


def operator_settings(rs: RoomServerHandle, tmp_path: Path, **overrides: Any) -> OperatorSettings:
    base: dict[str, Any] = {
        "seeds": {"roots": [EXAMPLES]},
        "room_server": {"base_url": rs.url, "token": SecretStr(rs.token)},
        "store": {"url": f"sqlite:///{tmp_path / 'operator.db'}"},
        "reconciliation": {"interval_seconds": 30.0, "failure_backoff_initial_seconds": 0.2},
        "guardrails": {"require_confirm_header": False},
    }
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return OperatorSettings(**base)


@contextlib.asynccontextmanager
async def running_operator(
    settings: OperatorSettings, *, token: str | None = None
) -> AsyncIterator[Operator]:
    app = create_app(settings)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with serve_app(app) as url, httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        yield Operator(url=url, app=app, http=http, settings=settings)


@pytest.fixture
async def roomserver(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    async with running_roomserver(tmp_path / "roomserver") as handle:
        yield handle


@pytest.fixture
async def operator(roomserver: RoomServerHandle, tmp_path: Path) -> AsyncIterator[Operator]:
    async with running_operator(operator_settings(roomserver, tmp_path)) as handle:
        yield handle


@pytest.fixture
def admin(roomserver: RoomServerHandle) -> httpx.AsyncClient:
    """A direct client of the room server (to cause drift and read the truth)."""
    return httpx.AsyncClient(
        base_url=roomserver.url, headers={"Authorization": f"Bearer {roomserver.admin_token}"}, timeout=10
    )


def room_spec(room_id: str, *, version: int = 1, entities: int = 2, artifacts: int = 0) -> dict[str, Any]:
    """A JSON RoomSpec with `entities` agents and `artifacts` inline-less artifacts seeded from examples."""
    return {
        "apiVersion": "v1",
        "kind": "RoomSpec",
        "metadata": {"name": room_id, "version": version},
        "spec": {
            "roomId": room_id,
            "entities": [{"id": f"E-agent-{index}", "kind": "agent"} for index in range(entities)],
            "artifacts": [
                {
                    "name": f"doc-{index}",
                    "type": "document",
                    "workspace": "shared",
                    "seedFrom": "seeds/project-plan.md",
                }
                for index in range(artifacts)
            ],
        },
    }


@contextlib.asynccontextmanager
async def sse_data(
    http: httpx.AsyncClient, path: str, **params: str
) -> AsyncIterator[AsyncIterator[dict[str, Any]]]:
    """The JSON `data:` payloads of an SSE stream (events arrive as they happen: nothing is polled)."""
    async with http.stream("GET", path, params=params, timeout=httpx.Timeout(10, read=None)) as stream:

        async def payloads() -> AsyncIterator[dict[str, Any]]:
            async for line in stream.aiter_lines():
                if line.startswith("data: "):
                    payload: dict[str, Any] = json.loads(line.removeprefix("data: "))
                    yield payload

        yield payloads()
