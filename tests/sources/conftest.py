"""Fixtures of the GitOps source tests: the real room server and operator of `tests/service/conftest.py`,
an operator with sources configured, and waiting on a source's syncs (no sleeps: each sync notifies)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from roomoperator.sources.syncing import Syncer
from roomoperator.store.sources import SourceState
from tests.service.conftest import Operator, admin, operator_settings, room_spec, roomserver, running_operator
from tests.support.roomserver import RoomServerHandle

__all__ = ["admin", "roomserver"]

WAIT_SECONDS = 20.0


@contextlib.asynccontextmanager
async def operator_with(
    rs: RoomServerHandle, tmp_path: Path, *sources: dict[str, Any], **overrides: Any
) -> AsyncIterator[Operator]:
    """The operator with `sources` (settings dicts), its data folder under `tmp_path`."""
    settings = operator_settings(rs, tmp_path, sources=list(sources), data_dir=tmp_path / "data", **overrides)
    async with running_operator(settings) as handle:
        yield handle


def syncer_of(operator: Operator, name: str) -> Syncer:
    syncers: list[Syncer] = operator.app.state.sources
    return next(syncer for syncer in syncers if syncer.name == name)


async def synced(operator: Operator, name: str, predicate: Callable[[SourceState], bool]) -> SourceState:
    """The source's state once `predicate` holds after one of its syncs, and every run it queued done."""
    async with asyncio.timeout(WAIT_SECONDS):
        state = await syncer_of(operator, name).wait_for(predicate)
        await operator.controller.wait_idle()
    return state


def write_spec(path: Path, room_id: str, **fields: Any) -> None:
    """A spec file (JSON, which is YAML too) declaring one room."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(room_spec(room_id, **fields), indent=2) + "\n", encoding="utf-8")


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` (a fixed identity, no user configuration) and answer its output."""
    done = subprocess.run(
        [
            "git",
            "-c",
            "user.name=test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "init.defaultBranch=main",
            *args,
        ],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout.strip()
