"""`roomop up` (room server + operator on this machine), `roomop serve` (the operator alone), and
`roomop status` / `roomop audit` / `roomop rollback` (clients of a running operator).

`serve` and `up` run the service through `cli/hosting.py`, imported inside those two commands only: every
other command (and `roomop --help`) starts without FastAPI, SQLAlchemy or the controller."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from roomoperator.cli.app import OutputFormat, OutputOption, app
from roomoperator.clients.operator import OperatorClient, OperatorError
from roomoperator.model.codes import ExitCode
from roomoperator.settings import OperatorSettings, SettingsError, load_settings
from roomoperator.spec.errors import SpecError
from roomoperator.spec.loading import LoadedSpec, load_file

console = Console(stderr=True)
OperatorUrl = Annotated[
    str, typer.Option("--operator", envvar="ROOMOP_OPERATOR_URL", help="URL of the running operator.")
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", envvar="ROOMOP_CONFIG", help="YAML configuration file.")
]
ApiToken = Annotated[
    str | None,
    typer.Option("--token", help="The operator API token (default ROOMOP_API_TOKEN).", show_default=False),
]


def settings_of(config: Path | None, **overrides: Any) -> OperatorSettings:
    try:
        return load_settings(config_file=config, **overrides)
    except (SettingsError, ValidationError) as exc:
        console.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(ExitCode.ERROR) from None


def sources_of(config: Path | None, added: list[dict[str, Any]]) -> list[Any]:
    """The configuration file's sources and those of the command's options (an override of `sources`
    would replace the file's list)."""
    return [*settings_of(config).sources, *added]


def failure(message: str) -> typer.Exit:
    console.print(message, style="red", soft_wrap=True, highlight=False, markup=False)
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
    specs: Annotated[
        Path | None, typer.Option("--specs", help="A folder of *.room.yaml files to keep rooms as (GitOps).")
    ] = None,
    git_url: Annotated[
        str | None, typer.Option("--git", help="A git repository of spec files to keep rooms as (GitOps).")
    ] = None,
    branch: Annotated[str, typer.Option(help="The --git branch.")] = "main",
    path: Annotated[str, typer.Option("--path", help="The --git folder holding the spec files.")] = ".",
    interval: Annotated[
        float, typer.Option(help="Seconds between polls of --git (and full rescans of --specs).")
    ] = 30.0,
    prune: Annotated[
        bool, typer.Option(help="A deleted spec file removes what the operator made in its room.")
    ] = False,
    allow_overrides: Annotated[
        bool, typer.Option(help="POST /apply may change the rooms of --specs / --git.")
    ] = False,
    webhook_secret: Annotated[
        str | None,
        typer.Option(envvar="ROOMOP_WEBHOOK_SECRET", help="Shared secret of POST /hooks/git for --git."),
    ] = None,
) -> None:
    """Run the operator: HTTP API plus continuous reconciliation of every managed room; with --specs or
    --git, the rooms are kept as the spec files there say (GitOps, see `roomop sources`)."""
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
    common = {"interval_seconds": interval, "prune": prune, "allow_overrides": allow_overrides}
    added: list[dict[str, Any]] = []
    if specs is not None:
        added.append({"name": "specs", "folder": specs, **common})
    if git_url is not None:
        secret = {"webhook_secret": webhook_secret} if webhook_secret else {}
        added.append({"name": "git", "git": git_url, "branch": branch, "path": path, **common, **secret})
    if added:
        overrides["sources"] = sources_of(config, added)
    from roomoperator.cli import hosting  # the service itself: imported only by `serve` and `up`

    hosting.serve(settings_of(config, **overrides))


@app.command()
def up(
    specs: Annotated[
        list[Path] | None,
        typer.Argument(help="RoomSpec files to apply, or folders of them to keep rooms as."),
    ] = None,
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
    """Start the room server and the operator, apply SPEC files, keep reconciling until Ctrl-C.

    On a terminal a live table shows every room; each run that changed a room, each drift corrected and
    each failure is one log line (JSON when not a terminal), also appended to DATA/operator.log. The
    room server is restarted when it exits. A SPEC file never downgrades a room: when the operator holds
    a newer revision made another way (the API), that one is kept (one line says so) unless `--force`.
    A SPEC folder is a GitOps source (as `roomop serve --specs`): its `*.room.yaml` files are applied and
    followed, each change within about a second."""
    loaded: list[LoadedSpec] = []
    folders = [path for path in specs or [] if path.is_dir()]
    try:
        for path in specs or []:
            if not path.is_dir():
                loaded.extend(load_file(path))
    except SpecError as exc:
        for issue in exc.issues:
            console.print(f"[red]{issue}[/red]")
        raise typer.Exit(ExitCode.ERROR) from None
    from roomoperator.cli import hosting

    code = hosting.up(
        loaded,
        folders=folders,
        host=host,
        ports=(operator_port, server_port),
        data=data.resolve(),
        secure=not insecure_no_auth,
        force=force,
        config=config,
    )
    raise typer.Exit(code)


def _api_token(token: str | None, config: Path | None) -> str | None:
    """`--token`, else the operator API token of the settings (`ROOMOP_API_TOKEN`, `api.token`)."""
    secret = None if token else settings_of(config).api.token
    return token or (secret.get_secret_value() if secret else None)


def _get(operator: str, path: str, *, token: str | None, **params: Any) -> Any:
    async def read() -> Any:
        async with OperatorClient(operator, token=token) as client:
            return await client.get_json(path, params=params)

    try:
        return asyncio.run(read())
    except OperatorError as exc:
        raise failure(str(exc)) from None


@app.command()
def status(
    operator: OperatorUrl = "http://127.0.0.1:8080",
    output: OutputOption = OutputFormat.text,
    token: ApiToken = None,
    config: ConfigFile = None,
) -> None:
    """Show the operator's health and every room's status."""
    body = _get(operator, "/status", token=_api_token(token, config))
    while body.get("nextCursor"):  # `/status` answers its rooms in pages
        page = _get(operator, "/status", token=_api_token(token, config), cursor=body["nextCursor"])
        body = {**page, "rooms": [*body["rooms"], *page["rooms"]]}
    if output is OutputFormat.json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"RoomOperator {body['version']} ({body.get('healthStatus', body['health'])})")
    table.add_column("room", no_wrap=True)
    for column in ("managed", "ready", "stalled", "cycles", "reconciling", "last reconcile (UTC)"):
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
            (room["lastReconcile"] or "-")[:19].replace("T", " "),
        )
    Console().print(table)
    typer.echo(f"queued requests: {body['queuedRequests']}")


@app.command()
def sources(
    operator: OperatorUrl = "http://127.0.0.1:8080",
    output: OutputOption = OutputFormat.text,
    token: ApiToken = None,
    config: ConfigFile = None,
) -> None:
    """Show every GitOps source: its last fetched, attempted and applied revisions, its rooms, its errors."""
    body = _get(operator, "/sources", token=_api_token(token, config))
    if output is OutputFormat.json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title="GitOps sources")
    table.add_column("source", no_wrap=True)
    for column in ("kind", "ready", "rooms", "applied", "attempted", "fetched"):
        table.add_column(column, no_wrap=True)
    table.add_column("location")
    for item in body["items"]:
        ready = item["conditions"][0]
        table.add_row(
            item["name"],
            item["kind"],
            ready["status"] if ready["status"] == "True" else ready["reason"],
            str(len(item["rooms"])),
            (item["lastAppliedRevision"] or "-")[:12],
            (item["lastAttemptedRevision"] or "-")[:12],
            (item["lastFetchedAt"] or "-")[11:19] or "-",
            item["location"],
        )
    Console().print(table)
    for item in body["items"]:
        for error in item["errors"]:
            console.print(f"{item['name']}: {error['message']}", style="red", markup=False, highlight=False)


@app.command()
def audit(
    operator: OperatorUrl = "http://127.0.0.1:8080",
    count: Annotated[int, typer.Option(min=1, help="How many of the latest entries.")] = 50,
    room: Annotated[str | None, typer.Option(help="Only this room.")] = None,
    correlation_id: Annotated[str | None, typer.Option(help="Every entry of one run.")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action, e.g. entity.joined.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", help="Then print new entries as they happen, until Ctrl-C.")
    ] = False,
    output: OutputOption = OutputFormat.text,
    token: ApiToken = None,
    config: ConfigFile = None,
) -> None:
    """Show the latest audit entries of a running operator, oldest first (`--follow`: then keep
    printing new ones, one a line)."""
    filters = {"roomId": room, "correlationId": correlation_id, "action": action}
    wanted = {key: value for key, value in filters.items() if value is not None}
    as_json = output is OutputFormat.json
    token = _api_token(token, config)
    body = _get(operator, "/audit", token=token, count=count, **wanted)
    if follow:
        for entry in body["entries"]:
            typer.echo(json.dumps(entry) if as_json else _audit_line(entry))
        _follow(operator, wanted, token=token, shown=body["entries"], as_json=as_json)
        return
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    table = Table(title=f"Audit ({len(body['entries'])} entries, oldest first, UTC)")
    table.add_column("time / run", no_wrap=True)
    table.add_column("room / action", overflow="fold")
    table.add_column("details", overflow="fold", ratio=1)
    for entry in body["entries"]:
        actor = f"by {entry['actor']}\n" if entry.get("actor") else ""
        table.add_row(
            f"{entry['timestamp'][11:19]}\n{entry['correlationId'][:8]}",
            f"{entry['roomId']}\n{entry['action']}",
            actor + "\n".join(_details(entry, short=True)),
        )
    Console().print(table)


DIGEST = re.compile(r"[0-9a-f]{40,}")


def _details(entry: dict[str, Any], *, short: bool = False) -> list[str]:
    """`key=value` per metadata item; `short`: digests cut to 12 characters, as the table shows them."""
    return [
        f"{key}={value[:12] + '…' if short and DIGEST.fullmatch(str(value)) else value}"
        for key, value in entry["metadata"].items()
    ]


def _audit_line(entry: dict[str, Any]) -> str:
    actor = f" by {entry['actor']}" if entry.get("actor") else ""
    details = " ".join(_details(entry))
    return f"{entry['timestamp']} {entry['roomId']} {entry['action']}{actor} {details}".rstrip()


def _follow(
    operator: str, wanted: dict[str, str], *, token: str | None, shown: list[dict[str, Any]], as_json: bool
) -> None:
    """Print the operator's `GET /events` entries that are newer than the `shown` ones (its replay of
    recent entries overlaps them), as they happen, until Ctrl-C."""

    def key(entry: dict[str, Any]) -> tuple[dt.datetime, str, str, str]:
        when = dt.datetime.fromisoformat(entry["timestamp"])
        return when, entry["correlationId"], entry["action"], json.dumps(entry["metadata"], sort_keys=True)

    seen = {key(entry) for entry in shown}
    latest = max((when for when, *_ in seen), default=None)

    def new(entry: dict[str, Any]) -> bool:
        entry_key = key(entry)
        return (latest is None or entry_key[0] >= latest) and entry_key not in seen

    async def follow() -> None:
        async with OperatorClient(operator, token=token) as client:
            async for event in client.events():
                entry = event.data
                if not (isinstance(entry, dict) and "action" in entry):
                    continue
                if all(entry.get(key) == value for key, value in wanted.items()) and new(entry):
                    typer.echo(json.dumps(entry) if as_json else _audit_line(entry))

    try:
        asyncio.run(follow())
    except OperatorError as exc:
        raise failure(str(exc)) from None
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
    token: ApiToken = None,
    config: ConfigFile = None,
) -> None:
    """Restore a revision of a room: show the plan, then (`--yes`) apply that revision's spec and seed
    files again as a new revision. Exits 2 when the plan has changes and `--yes` is not given."""
    token = _api_token(token, config)

    async def restore() -> int:
        async with OperatorClient(operator, token=token) as client:
            plan = await client.post_rollback(room, to_revision, dry_run=True, confirm=yes)
            if plan.status not in (200, 202):
                raise OperatorError(f"rollback of {room} to revision {to_revision}: {plan.body}")
            changes = _changes(plan.body)
            summary = (
                f"{len(changes)} kinds of change" if changes else "nothing to change: the room matches it"
            )
            typer.echo(f"restore {room} to revision {to_revision}: {summary}")
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
        raise failure(str(exc)) from None
    raise typer.Exit(code)
