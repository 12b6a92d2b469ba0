"""Engine test fixtures: the real room server on a random 127.0.0.1 port, operator settings for fast tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from roomoperator.model.audit import AuditEntry
from roomoperator.settings import OperatorSettings, ReconciliationSettings, RetrySettings
from roomoperator.spec.models import RoomSpec
from tests.support.roomserver import RoomServerHandle, running_roomserver


@pytest.fixture
async def roomserver(tmp_path: Path) -> AsyncIterator[RoomServerHandle]:
    """The real room server, in the test's loop, with a token holding every scope."""
    async with running_roomserver(tmp_path / "roomserver") as handle:
        yield handle


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


def room_spec(room_id: str = "room-eng-01", *, version: int = 1, **body: Any) -> RoomSpec:
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
