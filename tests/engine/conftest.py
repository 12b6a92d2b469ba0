"""Engine test fixtures: the real room server on a random 127.0.0.1 port, operator settings for fast tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from roomoperator.audit import AuditEntry
from roomoperator.settings import OperatorSettings, ReconciliationSettings, RetrySettings
from roomoperator.spec.models import RoomSpec
from roomserver.app import create_app
from roomserver.settings import ServerSettings
from tests.support.servers import serve_app

FULL_SCOPES = [
    "room:read",
    "room:entities:write",
    "room:artifacts:write",
    "room:policies:write",
    "room:admin",
]
OPERATOR_TOKEN = "operator-token-0123456789"
LIMITED_TOKEN = "limited-token-0123456789"  # room:read and room:entities:write only


@dataclass
class RoomServerUnderTest:
    url: str
    token: str
    limited_token: str
    data_dir: Path


@pytest.fixture
async def roomserver(tmp_path: Path) -> AsyncIterator[RoomServerUnderTest]:
    tokens = {
        "tokens": [
            {"name": "operator", "token": OPERATOR_TOKEN, "scopes": FULL_SCOPES},
            {"name": "limited", "token": LIMITED_TOKEN, "scopes": ["room:read", "room:entities:write"]},
        ]
    }
    data_dir = tmp_path / "roomserver"
    app = create_app(ServerSettings(data_dir=data_dir, tokens=json.dumps(tokens)))
    async with serve_app(app) as url:
        yield RoomServerUnderTest(url, OPERATOR_TOKEN, LIMITED_TOKEN, data_dir)


def fast_settings(**overrides: Any) -> OperatorSettings:
    """Defaults, with millisecond retry delays and no practical rate limit."""
    values: dict[str, Any] = {
        "retry": RetrySettings(initial_delay_ms=1, max_delay_ms=5, max_total_seconds=5),
        "reconciliation": ReconciliationSettings(rate_limit_per_second=10_000),
        **overrides,
    }
    return OperatorSettings(**values)


@dataclass
class ListSink:
    """An AuditSink keeping entries in memory."""

    entries: list[AuditEntry] = field(default_factory=list)

    async def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)

    @property
    def actions(self) -> list[str]:
        return [e.action for e in self.entries]


def room_spec(room_id: str = "room-eng-1", *, version: int = 1, **body: Any) -> RoomSpec:
    return RoomSpec.model_validate(
        {"metadata": {"name": "engine-test", "version": version}, "spec": {"roomId": room_id, **body}}
    )


@pytest.fixture
def seeds(tmp_path: Path) -> Path:
    """A spec folder with two seed files."""
    folder = tmp_path / "spec"
    (folder / "seeds").mkdir(parents=True)
    (folder / "seeds" / "plan.md").write_text("# Plan\n\nship it\n")
    (folder / "seeds" / "data.json").write_text('{"rows": [1, 2, 3]}\n')
    return folder
