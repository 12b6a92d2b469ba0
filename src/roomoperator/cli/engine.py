"""`roomop plan` and `roomop apply`: the one-shot, Terraform-like path through the reconcile engine.

`apply` reads the spec file once and uses one client in one event loop: it plans every room (a dry run),
shows the plans, asks once (unless `--yes`), then applies each room with the plan the user confirmed
as the engine's `expect`. A room that changed in between is not written: the engine answers
`PLAN_CHANGED` with the new plan, which is shown instead.

Exit codes (`ExitCode`, Terraform's convention): `plan` 0 nothing to do, 2 changes, 1 error; `apply` 0
success, 1 error, and with `--detailed-exitcode` 2 when it changed something. Any failed room makes the
whole command 1. Tables and messages for people come from `cli/rendering.py`; `--output json` prints the
versioned plan (`plan`) or the run result (`apply`), documented in `docs/plan-format.md`.

A room an operator manages (the `manager` of its state) is refused with exit 1 unless `--force`: the
operator would revert the change; its spec goes through the operator (`roomop apply --operator URL`).

With `--operator URL` the same commands plan and apply through that running operator instead
(`cli/remote.py`): same output, same exit codes; `--operator` and `--server` together are refused.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from roomoperator.cli.app import OutputFormat, OutputOption, app
from roomoperator.cli.remote import ThroughOperator
from roomoperator.cli.rendering import print_applied, print_plan_changed, print_planned, print_spec_issues
from roomoperator.clients.errors import RoomServerError
from roomoperator.clients.operator import OperatorClient, OperatorError
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Progress as PhaseProgress
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.codes import ExitCode, RunCode
from roomoperator.model.results import RunResult
from roomoperator.planning.planjson import changes_digest
from roomoperator.settings import OperatorSettings, SettingsError, load_settings
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import LoadedSpec, load_file

FileOption = Annotated[Path, typer.Option("--file", "-f", help="RoomSpec file (YAML or JSON).")]
# No `envvar=` on --server and --token: the settings read RoomServer__BaseUrl, ROOM_AUTH_TOKEN (one-shot)
# and ROOMOP_API_TOKEN (--operator), so the environment never conflicts with --operator.
ServerOption = Annotated[
    str | None,
    typer.Option("--server", help="Room server URL, one-shot path (default: settings, RoomServer__BaseUrl)."),
]
OperatorOption = Annotated[
    str | None,
    typer.Option("--operator", help="URL of a running operator: plan and apply through it instead."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="Bearer token: the room server's (default ROOM_AUTH_TOKEN), or with --operator the operator "
        "API's (default ROOMOP_API_TOKEN).",
        show_default=False,
    ),
]
ConfirmOption = Annotated[
    bool, typer.Option("--confirm", help="Confirm removals beyond the guardrails (X-Confirm).")
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force", help="Write to a room an operator manages (it reverts what its spec does not say)."
    ),
]


@dataclass(frozen=True)
class Room:
    """One room of the spec file and the folder its seed files resolve against."""

    loaded: LoadedSpec
    seed_root: Path


def _rooms(file: Path) -> list[Room]:
    try:
        loaded = load_file(file)
    except SpecError as error:
        print_spec_issues(Console(stderr=True, highlight=False, soft_wrap=True), error.issues)
        raise typer.Exit(ExitCode.ERROR) from error
    return [Room(room, room.base_dir or file.resolve().parent) for room in loaded]


def _settings() -> OperatorSettings:
    try:
        return load_settings()
    except (SettingsError, ValidationError) as error:
        Console(stderr=True).print(f"[red]configuration error:[/red] {escape(str(error))}")
        raise typer.Exit(ExitCode.ERROR) from error


@asynccontextmanager
async def _reconciler(server: str | None, token: str | None) -> AsyncIterator[Reconciler]:
    """One client and one reconciler for the whole command."""
    settings = _settings()
    secret = settings.room_server.token
    async with RoomServerClient(
        server or settings.room_server.base_url,
        token=token or (secret.get_secret_value() if secret else None),
        timeout=settings.room_server.timeout_seconds,
    ) as client:
        yield Reconciler(client, settings)


async def refuse_managed_rooms(
    reconciler: Reconciler, rooms: Sequence[Room], *, file: Path, force: bool
) -> None:
    """Exit 1 when an operator manages one of the rooms (its state names a `manager`), unless `force`.
    A room whose state cannot be read is left to the engine, which reports why."""
    for room in rooms:
        try:
            manager = (await reconciler.client.get_state(room.loaded.spec.room_id)).manager
        except RoomServerError:
            continue
        if manager is None:
            continue
        url = manager.url or "URL"
        where = f" ({manager.url})" if manager.url else ""
        message = (
            f"room {room.loaded.spec.room_id} is managed by the operator {manager.name!r}{where}: it would"
            f" revert a change made here. Send the spec to it: roomop apply --operator {url} -f {file}"
        )
        console = Console(stderr=True, highlight=False, soft_wrap=True)
        if force:
            console.print(f"[yellow]warning:[/yellow] {escape(message)} (--force: applying here anyway)")
            continue
        console.print(f"[red]error:[/red] {escape(message)}, or pass --force to write here anyway")
        raise typer.Exit(ExitCode.ERROR)


class Runner(Protocol):
    """Where rooms are planned and applied: this process (the one-shot path) or a running operator."""

    async def plan(self, rooms: Sequence[Room], *, confirm: bool) -> list[RunResult]: ...

    async def apply(
        self, room: Room, confirmed: RunResult, *, confirm: bool, console: Console | None
    ) -> RunResult: ...


@dataclass(frozen=True)
class _OneShot:
    reconciler: Reconciler

    async def plan(self, rooms: Sequence[Room], *, confirm: bool) -> list[RunResult]:
        return await plan_rooms(self.reconciler, rooms, confirm=confirm)

    async def apply(
        self, room: Room, confirmed: RunResult, *, confirm: bool, console: Console | None
    ) -> RunResult:
        return await apply_room(self.reconciler, room, confirmed, confirm=confirm, console=console)


@asynccontextmanager
async def _runner(
    rooms: Sequence[Room],
    *,
    file: Path,
    server: str | None,
    operator: str | None,
    token: str | None,
    force: bool,
) -> AsyncIterator[Runner]:
    """The one-shot path (after the managed-room check), or with `operator` that operator."""
    if operator is None:
        async with _reconciler(server, token) as reconciler:
            await refuse_managed_rooms(reconciler, rooms, file=file, force=force)
            yield _OneShot(reconciler)
        return
    if server is not None:
        Console(stderr=True).print(
            "[red]error:[/red] --operator and --server name two different paths: --server applies the spec"
            " from here to a room server (one-shot), --operator sends it to the operator that manages the"
            " room. Pass one of them."
        )
        raise typer.Exit(ExitCode.ERROR)
    secret = _settings().api.token
    async with OperatorClient(
        operator, token=token or (secret.get_secret_value() if secret else None)
    ) as client:
        yield ThroughOperator(client, force=force)


def _run(work: Coroutine[Any, Any, list[RunResult]]) -> list[RunResult]:
    """Run a command's work; an operator's refusal or failure is printed and exits 1."""
    try:
        return asyncio.run(work)
    except OperatorError as error:
        Console(stderr=True, highlight=False, soft_wrap=True).print(f"[red]error:[/red] {escape(str(error))}")
        raise typer.Exit(ExitCode.ERROR) from None


async def plan_rooms(reconciler: Reconciler, rooms: Sequence[Room], *, confirm: bool) -> list[RunResult]:
    """The dry run of every room: its plan, the scope checks and the guardrails' verdict; nothing written."""
    return [
        await reconciler.reconcile(room.loaded.spec, seed_root=room.seed_root, dry_run=True, confirm=confirm)
        for room in rooms
    ]


async def apply_room(
    reconciler: Reconciler, room: Room, confirmed: RunResult, *, confirm: bool, console: Console | None
) -> RunResult:
    """Apply exactly the plan of `confirmed` (the room's dry run that the user saw); with a `console`
    that is a terminal, a progress bar follows the phases and the changes made."""
    with ExitStack() as stack:
        advance = None
        if console is not None and console.is_terminal:
            columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
            bar = stack.enter_context(Progress(*columns, console=console, transient=True))
            advance = _progress_of(bar, room.loaded.spec.room_id)
        return await reconciler.reconcile(
            room.loaded.spec,
            seed_root=room.seed_root,
            confirm=confirm,
            actor="cli",
            expect=None if confirmed.plan is None else changes_digest(confirmed.plan),
            progress=advance,
        )


def _progress_of(bar: Progress, room_id: str) -> PhaseProgress:
    task = bar.add_task(f"room {room_id}", total=None)
    shown: set[str] = set()

    def advance(phase: str, done: int, total: int) -> None:
        # A new phase is drawn at once, however short it is (the bar refreshes ten times a second).
        fresh = phase not in shown
        shown.add(phase)
        description = f"room {room_id}: {phase.lower()}"
        bar.update(task, description=description, completed=done, total=total, refresh=fresh)

    return advance


def _has_changes(result: RunResult) -> bool:
    return bool(result.plan and result.plan["changes"])


def _plan_exit_code(results: Sequence[RunResult]) -> ExitCode:
    """1 when any room failed to plan or its plan is refused, else 2 when any room has changes, else 0."""
    if not all(result.success for result in results):
        return ExitCode.ERROR
    return ExitCode.CHANGES if any(_has_changes(result) for result in results) else ExitCode.OK


def _apply_exit_code(results: Sequence[RunResult], *, detailed: bool) -> ExitCode:
    """1 when any room failed; with `detailed`, 2 when any room was changed (or, for a dry run, would be)."""
    if not all(result.success for result in results):
        return ExitCode.ERROR
    changed = any(result.applied or (result.dry_run and _has_changes(result)) for result in results)
    return ExitCode.CHANGES if detailed and changed else ExitCode.OK


def ask_to_apply(*, err: bool) -> None:
    """Ask once before applying the plans shown; refuse when nobody can answer (stdin is not a terminal)."""
    if not sys.stdin.isatty():
        Console(stderr=err).print(
            "[red]error:[/red] stdin is not a terminal, so nobody can confirm these changes:"
            " pass --yes to apply the plan shown without asking"
        )
        raise typer.Exit(ExitCode.ERROR)
    typer.confirm("Apply these changes?", abort=True, err=err)


def _echo_json(bodies: Sequence[Any]) -> None:
    typer.echo(json.dumps(bodies[0] if len(bodies) == 1 else list(bodies), indent=2))


def _run_bodies(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    return [result.model_dump(mode="json", by_alias=True) for result in results]


def _error_body(result: RunResult) -> dict[str, Any]:
    return {"roomId": result.room_id, "code": result.code, "errors": result.errors}


async def _plan(
    file: Path, server: str | None, token: str | None, *, confirm: bool, force: bool, operator: str | None
) -> list[RunResult]:
    rooms = _rooms(file)
    async with _runner(
        rooms, file=file, server=server, operator=operator, token=token, force=force
    ) as runner:
        return await runner.plan(rooms, confirm=confirm)


@app.command()
def plan(
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    confirm: ConfirmOption = False,
    force: ForceOption = False,
    operator: OperatorOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show what `apply` would change. Exit 0: nothing to do, 2: changes, 1: error.

    A plan the guardrails refuse cannot be applied as it is: it is shown with the refusal and the exit
    is 1 (pass --confirm, here and to apply, when the removals are intended).
    """
    results = _run(_plan(file, server, token, confirm=confirm, force=force, operator=operator))
    if output is OutputFormat.json:
        _echo_json([result.plan if result.plan is not None else _error_body(result) for result in results])
    else:
        print_planned(Console(), results)
    raise typer.Exit(_plan_exit_code(results))


async def _apply(
    file: Path,
    server: str | None,
    token: str | None,
    *,
    confirm: bool,
    dry_run: bool,
    yes: bool,
    json_output: bool,
    force: bool,
    operator: str | None,
) -> list[RunResult]:
    """Plan once, show, ask, apply exactly what was shown; every room's result in file order."""
    console = Console()
    rooms = _rooms(file)
    async with _runner(
        rooms, file=file, server=server, operator=operator, token=token, force=force
    ) as runner:
        previews = await runner.plan(rooms, confirm=confirm)
        if not json_output:
            print_planned(console, previews)
        if dry_run or not all(p.success for p in previews) or not any(_has_changes(p) for p in previews):
            return previews
        if not yes:
            if json_output:  # the plans the question is about, where they do not mix with the JSON
                print_planned(Console(stderr=True), previews)
            ask_to_apply(err=json_output)
        report = Console(stderr=True) if json_output else console
        results = []
        for room, preview in zip(rooms, previews, strict=True):
            if not _has_changes(preview):
                results.append(preview)
                continue
            result = await runner.apply(
                room, preview, confirm=confirm, console=None if json_output else console
            )
            results.append(result)
            if result.code is RunCode.PLAN_CHANGED:
                print_plan_changed(report, result)
            elif not json_output:
                print_applied(console, result)
        return results


@app.command()
def apply(
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    confirm: ConfirmOption = False,
    force: ForceOption = False,
    operator: OperatorOption = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and run the pre-checks only.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before applying.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when changes were applied.")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Bring the rooms to their spec: plan, show, ask, apply exactly that plan, verify.

    Exit 0: success, 1: error (any room failing, the guardrails refusing, or a room that changed since
    its plan was shown: nothing is applied to it and its new plan is shown). With --detailed-exitcode,
    2 when changes were applied (with --dry-run: when there are changes to apply).
    Without a terminal to ask on, pass --yes.
    """
    json_output = output is OutputFormat.json
    results = _run(
        _apply(
            file,
            server,
            token,
            confirm=confirm,
            dry_run=dry_run,
            yes=yes,
            json_output=json_output,
            force=force,
            operator=operator,
        )
    )
    if json_output:
        _echo_json(_run_bodies(results))
    raise typer.Exit(_apply_exit_code(results, detailed=detailed_exitcode))
