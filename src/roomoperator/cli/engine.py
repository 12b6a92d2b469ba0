"""`roomop plan` and `roomop apply`: the one-shot, terraform-like path through the reconcile engine.

Exit codes (like `terraform plan -detailed-exitcode`): 0 nothing to do, 2 changes (planned, or applied),
1 error (bad spec, room server unreachable or refusing the token, guardrails refusing, items failing).
`--output json` prints the versioned plan (`plan`) or the run result (`apply`), documented in
`docs/plan-format.md`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from roomoperator.cli.app import OutputFormat, OutputOption, app
from roomoperator.cli.rendering import plan_summary, plan_table
from roomoperator.clients.roomserver import RoomServerClient
from roomoperator.engine.reconciler import Reconciler
from roomoperator.model.codes import RunCode
from roomoperator.model.results import RunResult
from roomoperator.settings import OperatorSettings
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import LoadedSpec, load_file

EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


FileOption = Annotated[Path, typer.Option("--file", "-f", help="RoomSpec file (YAML or JSON).")]
ServerOption = Annotated[
    str | None,
    typer.Option("--server", envvar="RoomServer__BaseUrl", help="Room server URL (default: settings)."),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", envvar="ROOM_AUTH_TOKEN", help="Bearer token for the room server.", show_default=False
    ),
]


def _load(file: Path, console: Console) -> list[LoadedSpec]:
    try:
        return load_file(file)
    except SpecError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(EXIT_ERROR) from error


def _client(settings: OperatorSettings, server: str | None, token: str | None) -> RoomServerClient:
    secret = settings.room_server.token
    return RoomServerClient(
        server or settings.room_server.base_url,
        token=token or (secret.get_secret_value() if secret else None),
        timeout=settings.room_server.timeout_seconds,
    )


def _seed_root(loaded: LoadedSpec, file: Path) -> Path:
    return loaded.base_dir or file.resolve().parent


def _exit_code(result: RunResult) -> int:
    if not result.success:
        return EXIT_ERROR
    changes = (result.plan or {}).get("changes", [])
    return EXIT_CHANGES if changes else EXIT_NO_CHANGES


def _print_problems(console: Console, result: RunResult) -> None:
    for error in result.errors:
        console.print(f"[red]error:[/red] {escape(error)}")
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")


def _print_plan(console: Console, result: RunResult) -> None:
    if result.plan is None:
        return
    if result.plan["changes"]:
        console.print(plan_table(result.plan))
    console.print(plan_summary(result.plan))


async def _plan(file: Path, server: str | None, token: str | None, *, confirm: bool) -> list[RunResult]:
    settings = OperatorSettings()
    results = []
    async with _client(settings, server, token) as client:
        reconciler = Reconciler(client, settings)
        for loaded in _load(file, Console(stderr=True)):
            seed_root = _seed_root(loaded, file)
            results.append(
                await reconciler.reconcile(loaded.spec, seed_root=seed_root, dry_run=True, confirm=confirm)
            )
    return results


@app.command()
def plan(
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show what `apply` would change. Exit 0: nothing to do, 2: changes, 1: error."""
    results = asyncio.run(_plan(file, server, token, confirm=False))
    console = Console()
    if output is OutputFormat.json:
        plans = [r.plan if r.plan is not None else _error_body(r) for r in results]
        typer.echo(json.dumps(plans[0] if len(plans) == 1 else plans, indent=2))
    else:
        for result in results:
            _print_plan(console, result)
            _print_problems(console, result)
    codes = [
        EXIT_ERROR if r.code not in (None, RunCode.GUARDRAILS_EXCEEDED) else _exit_code_of_plan(r)
        for r in results
    ]
    raise typer.Exit(max(codes, default=EXIT_NO_CHANGES))


def _exit_code_of_plan(result: RunResult) -> int:
    return EXIT_CHANGES if (result.plan or {}).get("changes") else EXIT_NO_CHANGES


def _error_body(result: RunResult) -> dict[str, Any]:
    return {"roomId": result.room_id, "code": result.code, "errors": result.errors}


def _result_table(result: RunResult) -> Table:
    table = Table(title=f"Result for room {result.room_id}")
    table.add_column("outcome")
    table.add_column("change", overflow="fold")
    table.add_column("detail", overflow="fold")
    for label in result.applied:
        table.add_row("[green]applied[/green]", label, "")
    for failure in result.failed:
        table.add_row(
            "[red]failed[/red]",
            f"{failure.op}:{failure.target}",
            f"{failure.message} ({failure.attempts} calls)",
        )
    for label in result.rolled_back:
        table.add_row("[yellow]rolled back[/yellow]", label, "")
    for label in result.remaining:
        table.add_row("[dim]remaining[/dim]", label, "")
    return table


async def _apply(
    loaded: LoadedSpec,
    file: Path,
    server: str | None,
    token: str | None,
    *,
    confirm: bool,
    show_progress: bool,
) -> RunResult:
    settings = OperatorSettings()
    async with _client(settings, server, token) as client:
        reconciler = Reconciler(client, settings)
        seed_root = _seed_root(loaded, file)
        if not show_progress:
            return await reconciler.reconcile(loaded.spec, seed_root=seed_root, confirm=confirm, actor="cli")
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("applying", total=None)

            def advance(phase: str, done: int, total: int) -> None:
                bar.update(task, description=phase.lower(), completed=done, total=total)

            return await reconciler.reconcile(
                loaded.spec, seed_root=seed_root, confirm=confirm, actor="cli", progress=advance
            )


@app.command()
def apply(
    file: FileOption,
    server: ServerOption = None,
    token: TokenOption = None,
    confirm: Annotated[
        bool, typer.Option("--confirm", help="Confirm a high change ratio (X-Confirm).")
    ] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Plan and run the pre-checks only.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask before applying.")] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Bring the room to its spec: plan, ask, apply, verify. Exit 0: nothing to do, 2: applied, 1: error."""
    console = Console()
    json_output = output is OutputFormat.json
    previews = asyncio.run(_plan(file, server, token, confirm=confirm))
    if not json_output:
        for preview in previews:
            _print_plan(console, preview)
            _print_problems(console, preview)
    failed = [p for p in previews if not p.success]
    if dry_run or failed or not any(p.plan and p.plan["changes"] for p in previews):
        if json_output:
            body = [p.model_dump(mode="json", by_alias=True) for p in previews]
            typer.echo(json.dumps(body[0] if len(body) == 1 else body, indent=2))
        raise typer.Exit(max((_exit_code(p) for p in previews), default=EXIT_NO_CHANGES))
    if not yes:
        if not sys.stdin.isatty():
            console.print("[red]error:[/red] not a terminal: pass --yes to apply without asking")
            raise typer.Exit(EXIT_ERROR)
        typer.confirm("Apply these changes?", abort=True)
    results = []
    for loaded, preview in zip(_load(file, Console(stderr=True)), previews, strict=True):
        if not (preview.plan and preview.plan["changes"]):
            results.append(preview)
            continue
        result = asyncio.run(
            _apply(
                loaded,
                file,
                server,
                token,
                confirm=confirm,
                show_progress=not json_output and console.is_terminal,
            )
        )
        results.append(result)
        if not json_output:
            console.print(_result_table(result))
            _print_problems(console, result)
            state = "converged" if result.converged else "not converged"
            console.print(f"{len(result.applied)} applied, {len(result.failed)} failed: the room is {state}.")
    if json_output:
        body = [r.model_dump(mode="json", by_alias=True) for r in results]
        typer.echo(json.dumps(body[0] if len(body) == 1 else body, indent=2))
    raise typer.Exit(max((_exit_code(r) for r in results), default=EXIT_NO_CHANGES))
