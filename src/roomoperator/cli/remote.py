"""`roomop plan --operator URL` and `roomop apply --operator URL`: the one-shot commands' plan, question and
apply, made by a running operator instead of this process, so the room keeps one owner.

Each room of the spec file is sent with its seed files (read from the file's folder, confined to it as
the one-shot path reads them) as one multipart `POST /apply`: first as a dry run, whose plan is shown,
then for real, with the digest of the plan shown (`X-Expect-Plan`: a room that changed in between is not
written); the run is followed (`GET /runs/{id}`) to its result, which `cli/engine.py` renders and
turns into exit codes exactly as it does for the one-shot path. On a terminal a spinner line shows the
run's status (queued, running) until it finishes.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from roomoperator.clients.operator import OperatorClient, OperatorError
from roomoperator.model.results import RunResult
from roomoperator.planning.planjson import changes_digest
from roomoperator.spec.loading import LoadedSpec
from roomoperator.spec.seeds import SeedPathError, resolve_seed_path


class Room(Protocol):
    """A room of the spec file and the folder its seed files resolve against."""

    @property
    def loaded(self) -> LoadedSpec: ...

    @property
    def seed_root(self) -> Path: ...


def seed_files(room: Room) -> dict[str, bytes]:
    """Every seed file of the room's spec, by its `seedFrom` as written; raises `OperatorError` (nothing is
    sent) when one is outside the spec's folder or cannot be read."""
    spec = room.loaded.spec
    seeds: dict[str, bytes] = {}
    for index, artifact in enumerate(spec.spec.artifacts):
        seed_from = artifact.seed_from
        if seed_from is None or seed_from in seeds:
            continue
        where = f"{room.loaded.source}: room {spec.room_id}: spec.artifacts[{index}].seedFrom {seed_from!r}"
        try:
            seeds[seed_from] = resolve_seed_path(room.seed_root, seed_from).read_bytes()
        except SeedPathError as exc:
            raise OperatorError(f"{where} {exc}; nothing was sent") from None
        except OSError as exc:
            raise OperatorError(
                f"{where}: cannot read the file ({exc.strerror or exc}); nothing was sent"
            ) from None
    return seeds


class ThroughOperator:
    """Plans and applies rooms through the operator at the client's URL (`force`: `X-Force`, a lower
    `metadata.version` than the room's is accepted)."""

    def __init__(self, client: OperatorClient, *, force: bool = False) -> None:
        self._client = client
        self._force = force

    async def plan(self, rooms: Sequence[Room], *, confirm: bool) -> list[RunResult]:
        """The operator's dry run of every room (its plan, scope checks and guardrails; nothing written)."""
        return [await self._send(room, dry_run=True, confirm=confirm) for room in rooms]

    async def apply(
        self, room: Room, confirmed: RunResult, *, confirm: bool, console: Console | None
    ) -> RunResult:
        """Apply the room's spec through the operator and follow the run to its result; the operator
        writes nothing when its plan is no longer the `confirmed` one (`PLAN_CHANGED`)."""
        expect = None if confirmed.plan is None else changes_digest(confirmed.plan)
        with contextlib.ExitStack() as stack:
            on_status = None
            if console is not None and console.is_terminal:
                columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
                bar = stack.enter_context(Progress(*columns, console=console, transient=True))
                on_status = _status_of(bar, room.loaded.spec.room_id, self._client.base_url)
            return await self._send(room, dry_run=False, confirm=confirm, expect=expect, on_status=on_status)

    async def _send(
        self,
        room: Room,
        *,
        dry_run: bool,
        confirm: bool,
        expect: str | None = None,
        on_status: Callable[[dict[str, Any]], None] | None = None,
    ) -> RunResult:
        spec = room.loaded.spec
        text = json.dumps(spec.to_wire())
        answer = await self._client.post_apply(
            text, seed_files(room), dry_run=dry_run, confirm=confirm, force=self._force, expect=expect
        )
        tried = f"{'planning' if dry_run else 'applying'} room {spec.room_id} through {self._client.base_url}"
        if answer.correlation_id is None:  # refused before any run: the spec, its seeds or the version
            errors = answer.body.get("errors") or [answer.body]
            code = answer.body.get("code", answer.status)
            raise OperatorError(f"the operator refused {tried} ({code}): " + "; ".join(map(str, errors)))
        run = await self._client.follow_run(answer.correlation_id, on_status=on_status)
        if run["status"] == "superseded":
            raise OperatorError(
                f"{tried}: the run {answer.correlation_id} was superseded by {run.get('supersededBy')}, an "
                "apply of the same room accepted after it; see `roomop status` for what the room keeps"
            )
        if not isinstance(run.get("result"), dict):
            raise OperatorError(f"{tried}: the run {answer.correlation_id} finished without a result: {run}")
        return RunResult.model_validate(run["result"])


def _status_of(bar: Progress, room_id: str, operator: str) -> Callable[[dict[str, Any]], None]:
    """A spinner line that follows the run's status (`queued`, `running`) while the operator applies it."""
    task = bar.add_task(f"room {room_id}: sent to {operator}", total=None)

    def show(run: dict[str, Any]) -> None:
        bar.update(task, description=f"room {room_id}: {run.get('status', '?')} at {operator}")

    return show
