"""`roomop up` (room server + operator on this machine), `roomop serve` (the operator alone), and
`roomop status` / `roomop audit` / `roomop rollback` (clients of a running operator)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from rich.console import Console
from rich.live import Live
from rich.table import Table

from roomoperator.cli.app import OutputFormat, OutputOption, app
from roomoperator.clients.operator import OperatorClient, OperatorError
from roomoperator.model.codes import ExitCode
from roomoperator.service.acceptance import Refused
from roomoperator.service.auth import AuthConfigError
from roomoperator.service.controller import Controller
from roomoperator.service.launching import (
    LaunchError,
    ensure_credentials,
    serving,
    start_roomserver,
    stop_on_signals,
    write_credentials,
)
from roomoperator.service.logs import configure_logging
from roomoperator.service.schemas import ConditionType
from roomoperator.settings import OperatorSettings, SettingsError, load_settings
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import LoadedSpec, load_file
from roomoperator.store import StoreError

console = Console(stderr=True)
OperatorUrl = Annotated[
    str, typer.Option("--operator", envvar="ROOMOP_OPERATOR_URL", help="URL of the running operator.")
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", envvar="ROOMOP_CONFIG", help="YAML configuration file.")
]


def _settings(config: Path | None, **overrides: Any) -> OperatorSettings:
    try:
        return load_settings(config_file=config, **overrides)
    except (SettingsError, ValidationError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(ExitCode.ERROR) from None


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]{message}[/red]")
    return typer.Exit(ExitCode.ERROR)


@app.command()
def serve(
    config: ConfigFile = None,
    host: Annotated[
        str | None, typer.Option(help="Address to bind (non-loopback needs an API token).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port to bind.")] = None,
    server: Annotated[str | None, typer.Option("--server", help="Room server base URL.")] = None,
    store: Annotated[
        str | None, typer.Option("--store", help="Store URL: sqlite:///path or postgresql://...")
    ] = None,
) -> None:
    """Run the operator: HTTP API plus continuous reconciliation of every managed room."""
    overrides: dict[str, Any] = {}
    for section, key, value in (
        ("api", "host", host),
        ("api", "port", port),
        ("room_server", "base_url", server),
    ):
        if value is not None:
            overrides.setdefault(section, {})[key] = value
    if store is not None:
        overrides["store"] = {"url": store}
    settings = _settings(config, **overrides)
    configure_logging(settings.logging)
    try:
        asyncio.run(_serve(settings))
    except (AuthConfigError, StoreError, LaunchError, OSError) as exc:
        raise _fail(str(exc)) from None


async def _serve(settings: OperatorSettings) -> None:
    stop = stop_on_signals()
    async with serving(settings) as (_, _, task):
        console.print(f"operator listening on http://{settings.api.host}:{settings.api.port}")
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)


@app.command()
def up(
    specs: Annotated[list[Path] | None, typer.Argument(help="RoomSpec files to apply.")] = None,
    host: Annotated[str, typer.Option(help="Address both services bind.")] = "127.0.0.1",
    operator_port: Annotated[int, typer.Option(help="Operator API port.")] = 8080,
    server_port: Annotated[int, typer.Option(help="Room server port.")] = 5000,
    data: Annotated[Path, typer.Option(help="Data folder (store, room server data, credentials).")] = Path(
        ".roomop"
    ),
    insecure_no_auth: Annotated[bool, typer.Option(help="No tokens anywhere (loopback only).")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Apply the SPEC files even over newer revisions.")
    ] = False,
    config: ConfigFile = None,
) -> None:
    """Start the room server and the operator, apply SPEC files, show a live summary until Ctrl-C.

    A SPEC file never downgrades a room: when the operator holds a newer revision made another way (the
    API), that one is kept (one line says so) unless `--force`."""
    loaded: list[LoadedSpec] = []
    try:
        for path in specs or []:
            loaded.extend(load_file(path))
    except SpecError as exc:
        for issue in exc.issues:
            console.print(f"[red]{issue}[/red]")
        raise typer.Exit(ExitCode.ERROR) from None
    data = data.resolve()
    data.mkdir(parents=True, exist_ok=True)
    operator_url, server_url = f"http://{host}:{operator_port}", f"http://{host}:{server_port}"
    credentials = ensure_credentials(data)
    secure = not insecure_no_auth
    if secure:
        path = write_credentials(data, credentials, operator_url=operator_url, server_url=server_url)
        if credentials.created:
            console.print(f"[bold]New credentials[/bold] in {path} (mode 0600):")
            console.print(f"  operator API token:  {credentials.api_token}")
            console.print(f"  room server admin:   {credentials.admin_token}")
        else:
            console.print(f"credentials: {path}")
    settings = _settings(
        config,
        api={
            "host": host,
            "port": operator_port,
            "token": SecretStr(credentials.api_token) if secure else None,
        },
        room_server={
            "base_url": server_url,
            "token": SecretStr(credentials.operator_token) if secure else None,
        },
        store={"url": f"sqlite:///{data / 'operator.db'}"},
    )
    configure_logging(settings.logging.model_copy(update={"json_output": True}))
    try:
        child = start_roomserver(
            data, host=host, port=server_port, tokens_file=data / "roomserver-tokens.json" if secure else None
        )
    except LaunchError as exc:
        raise _fail(str(exc)) from None
    console.print(f"room server: {server_url} (pid {child.process.pid}, log {data / 'roomserver.log'})")
    try:
        asyncio.run(_up(settings, loaded, force=force))
    except (AuthConfigError, StoreError, LaunchError, OSError) as exc:
        raise _fail(str(exc)) from None
    finally:
        child.stop()
        console.print("stopped the operator and the room server")


def _kept(item: LoadedSpec, refused: Refused) -> str:
    """The one line `roomop up` prints when it keeps the room's revision over a SPEC file's spec."""
    spec = item.spec
    if refused.revision is None:
        return f"not applied {item.source} (room {spec.room_id}): {'; '.join(refused.errors)}"
    by = f", by {refused.actor}" if refused.actor else ""
    return (
        f"kept {spec.room_id} revision {refused.revision} (v{refused.desired}{by}); {item.source} has"
        f" v{spec.metadata.version}: `roomop up --force` re-applies the file"
    )


async def _up(settings: OperatorSettings, loaded: list[LoadedSpec], *, force: bool) -> None:
    stop = stop_on_signals()
    async with serving(settings) as (operator, _, task):
        console.print(f"operator:    http://{settings.api.host}:{settings.api.port}  (API docs at /docs)")
        controller: Controller = operator.state.controller
        for item in loaded:
            try:
                submission = await controller.apply(
                    item.spec,
                    base_dir=item.base_dir,
                    confirm=True,
                    actor="roomop up",
                    force=force,
                    keep_stored=not force,
                )
            except Refused as refused:
                console.print(_kept(item, refused), soft_wrap=True, highlight=False, markup=False)
                continue
            result = await asyncio.shield(submission.request.done)
            for warning in submission.warnings:
                console.print(f"  [yellow]{warning}[/yellow]")
            if result is not None:
                verdict = "converged" if result.converged else (result.code or "not converged")
                revision = f"revision {submission.request.revision}" + (
                    " (unchanged)" if submission.unchanged else ""
                )
                console.print(
                    f"applied {item.spec.room_id} v{item.spec.metadata.version} {revision}: {verdict}"
                )
                for problem in [*result.errors, *result.warnings]:
                    console.print(f"  [yellow]{problem}[/yellow]")
        console.print("Ctrl-C stops both services.")
        waiter = asyncio.create_task(stop.wait())
        with Live(_summary(operator), console=console, refresh_per_second=1, transient=False) as live:
            while not (stop.is_set() or task.done()):
                await asyncio.wait([waiter, task], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                live.update(_summary(operator))
        waiter.cancel()


def _summary(operator: FastAPI) -> Table:
    controller: Controller = operator.state.controller
    health = operator.state.health.status.label
    table = Table(title=f"RoomOperator ({health})", expand=False)
    for column in ("room", "spec", "ready", "stalled", "cycles", "last reconcile", "phase"):
        table.add_column(column)
    for view in sorted(controller.rooms(), key=lambda v: v.room_id):
        states = {c.type: c.status for c in view.conditions}
        table.add_row(
            view.room_id + ("" if view.managed else " (unmanaged)"),
            f"v{view.spec_version}" if view.spec_version is not None else "-",
            states.get(ConditionType.READY, "-"),
            states.get(ConditionType.STALLED, "-"),
            str(view.cycles_since_converged),
            view.last_reconcile.strftime("%H:%M:%S") if view.last_reconcile else "-",
            view.current_phase or "idle",
        )
    return table


def _get(operator: str, path: str, **params: Any) -> Any:
    async def read() -> Any:
        async with OperatorClient(operator) as client:
            return await client.get_json(path, params=params)

    try:
        return asyncio.run(read())
    except OperatorError as exc:
        raise _fail(str(exc)) from None


@app.command()
def status(
    operator: OperatorUrl = "http://127.0.0.1:8080",
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show the operator's health and every room's status."""
    body = _get(operator, "/status")
    if output is OutputFormat.json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"RoomOperator {body['version']} ({body.get('healthStatus', body['health'])})")
    for column in ("room", "managed", "ready", "stalled", "cycles", "reconciling", "last reconcile"):
        table.add_column(column)
    for room in body["rooms"]:
        states = {c["type"]: c["status"] for c in room.get("conditions", [])}
        table.add_row(
            room["roomId"],
            str(room.get("managed", "-")),
            states.get("Ready", "-"),
            states.get("Stalled", "-"),
            str(room["cyclesSinceConverged"]),
            str(room["isReconciling"]),
            room["lastReconcile"] or "-",
        )
    Console().print(table)
    typer.echo(f"queued requests: {body['queuedRequests']}")


@app.command()
def audit(
    operator: OperatorUrl = "http://127.0.0.1:8080",
    count: Annotated[int, typer.Option(help="How many of the latest entries.")] = 50,
    room: Annotated[str | None, typer.Option(help="Only this room.")] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Every entry of one run.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. entity.joined.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Then print new entries as they happen.")
    ] = False,
    output: OutputOption = OutputFormat.text,
) -> None:
    """Show audit entries of a running operator, oldest first (`--follow` keeps streaming them)."""
    filters = {"roomId": room, "correlationId": correlation_id, "action": action}
    wanted = {key: value for key, value in filters.items() if value is not None}
    as_json = output is OutputFormat.json
    if follow:
        _follow(operator, wanted, as_json=as_json)
        return
    body = _get(operator, "/audit", count=count, **wanted)
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"Audit ({len(body['entries'])} entries, oldest first, UTC)")
    for column in ("time", "room", "action"):
        table.add_column(column, no_wrap=True)
    table.add_column("details", overflow="fold", min_width=16)
    table.add_column("run", no_wrap=True)
    for entry in body["entries"]:
        actor = f"by {entry['actor']} " if entry.get("actor") else ""
        table.add_row(
            entry["timestamp"][11:19],
            entry["roomId"],
            entry["action"],
            actor + _details(entry),
            entry["correlationId"][:8],
        )
    Console().print(table)


def _details(entry: dict[str, Any]) -> str:
    return " ".join(f"{key}={value}" for key, value in entry["metadata"].items())


def _audit_line(entry: dict[str, Any]) -> str:
    actor = f" by {entry['actor']}" if entry.get("actor") else ""
    return f"{entry['timestamp']} {entry['roomId']} {entry['action']}{actor} {_details(entry)}".rstrip()


def _follow(operator: str, wanted: dict[str, str], *, as_json: bool) -> None:
    """Print the operator's `GET /events` entries (the recent ones, then live) until Ctrl-C."""

    async def follow() -> None:
        async with OperatorClient(operator) as client:
            async for event in client.events():
                entry = event.data
                wanted_entry = isinstance(entry, dict) and "action" in entry
                if wanted_entry and all(entry.get(key) == value for key, value in wanted.items()):
                    typer.echo(json.dumps(entry) if as_json else _audit_line(entry))

    try:
        asyncio.run(follow())
    except OperatorError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        return


DIFF_KEYS = ("toJoin", "toKick", "toUpdate", "toSeed", "toPromote", "toApply", "toDeleteArtifacts", "toLoad")


def _changes(answer: dict[str, Any]) -> list[str]:
    """The plan lines of an `/apply`-shaped answer: each non-empty diff list."""
    diff = answer.get("diff") or {}
    return [f"{key}: {', '.join(map(str, diff[key]))}" for key in DIFF_KEYS if diff.get(key)]


@app.command()
def rollback(
    room: Annotated[str, typer.Argument(help="The room to restore.")],
    to_revision: Annotated[int, typer.Option("--to-revision", min=1, help="The revision to restore.")],
    operator: OperatorUrl = "http://127.0.0.1:8080",
    yes: Annotated[bool, typer.Option("--yes", help="Apply the restore after showing its plan.")] = False,
    detailed_exitcode: Annotated[
        bool, typer.Option("--detailed-exitcode", help="Exit 2 when the restore changed the room.")
    ] = False,
    config: ConfigFile = None,
) -> None:
    """Restore a revision of a room: show the plan, then (`--yes`) apply that revision's spec and seed
    files again as a new revision. Exits 2 when the plan has changes and `--yes` is not given."""
    secret = _settings(config).api.token
    token = secret.get_secret_value() if secret else None

    async def restore() -> int:
        async with OperatorClient(operator, token=token) as client:
            plan = await client.post_rollback(room, to_revision, dry_run=True, confirm=yes)
            if plan.status not in (200, 202):
                raise OperatorError(f"rollback of {room} to revision {to_revision}: {plan.body}")
            changes = _changes(plan.body)
            typer.echo(f"restore {room} to revision {to_revision}: {len(changes) or 'no'} kinds of change")
            for line in [*changes, *plan.body.get("warnings", [])]:
                typer.echo(f"  {line}")
            if not changes and plan.body.get("unchanged"):
                return ExitCode.OK
            if not yes:
                typer.echo("run again with --yes to apply it")
                return ExitCode.CHANGES if changes else ExitCode.OK
            answer = await client.post_rollback(room, to_revision, dry_run=False, confirm=True)
            body = answer.body
            if answer.status == 202 and answer.correlation_id:
                body = (await client.follow_run(answer.correlation_id)).get("result") or {}
            if answer.status not in (200, 202) or not body.get("success"):
                typer.echo(f"restore failed: {'; '.join(body.get('errors') or [str(body)])}")
                return ExitCode.ERROR
            typer.echo(f"restored {room} revision {to_revision} as revision {answer.body.get('revision')}")
            return ExitCode.CHANGES if detailed_exitcode and changes else ExitCode.OK

    try:
        code = asyncio.run(restore())
    except OperatorError as exc:
        raise _fail(str(exc)) from None
    raise typer.Exit(code)
