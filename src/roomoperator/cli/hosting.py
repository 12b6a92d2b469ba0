"""The operator running in this process, for `roomop serve` and `roomop up` (`cli/service.py` declares
both commands and imports this module inside them): the FastAPI app, the controller, the store and, for
`up`, the room server as a child process. Kept apart so that no other command pays for importing them
(`roomop --help` and `roomop plan` start in about half the memory, see `docs/operator.md`).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import structlog
from fastapi import FastAPI
from pydantic import SecretStr
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from roomoperator.cli.rendering import skipped_summary
from roomoperator.cli.service import console, failure, settings_of, sources_of
from roomoperator.model.codes import ExitCode
from roomoperator.service.acceptance import Refused
from roomoperator.service.auth import AuthConfigError
from roomoperator.service.controller import Controller
from roomoperator.service.launching import (
    Credentials,
    LaunchError,
    RoomServerChild,
    check_ports_free,
    data_folder_lock,
    ensure_credentials,
    serving,
    stop_on_signals,
    write_credentials,
)
from roomoperator.service.logs import configure_logging
from roomoperator.service.schemas import ConditionType
from roomoperator.settings import OperatorSettings
from roomoperator.spec.loading import LoadedSpec
from roomoperator.store import StoreError

log = structlog.get_logger("roomop.up")
FAILURES = (AuthConfigError, StoreError, LaunchError, OSError)
"""What `serve` and `up` report as one red line and exit 1."""


def serve(settings: OperatorSettings) -> None:
    """`roomop serve`: the operator until a signal."""
    configure_logging(settings.logging)
    try:
        asyncio.run(_serve(settings))
    except FAILURES as exc:
        raise failure(str(exc)) from None


def up(
    loaded: list[LoadedSpec],
    *,
    folders: list[Path],
    host: str,
    ports: tuple[int, int],
    data: Path,
    secure: bool,
    force: bool,
    config: Path | None,
) -> ExitCode:
    """`roomop up`: lock the data folder, check the ports, run both services until a signal."""
    operator_port, server_port = ports
    try:
        with data_folder_lock(data):
            check_ports_free(host, {"--server-port": server_port, "--operator-port": operator_port})
            settings, child = _prepared(host, ports, data, secure=secure, folders=folders, config=config)
            return asyncio.run(_up(settings, loaded, child, force=force))
    except FAILURES as exc:
        raise failure(str(exc)) from None


def _prepared(
    host: str, ports: tuple[int, int], data: Path, *, secure: bool, folders: list[Path], config: Path | None
) -> tuple[OperatorSettings, RoomServerChild]:
    """The credentials (printed), settings and room-server child of `roomop up`."""
    operator_port, server_port = ports
    operator_url, server_url = f"http://{host}:{operator_port}", f"http://{host}:{server_port}"
    credentials = ensure_credentials(data)
    if secure:
        path = write_credentials(data, credentials, operator_url=operator_url, server_url=server_url)
        _print_credentials(path, credentials)
    settings = settings_of(
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
        sources=sources_of(
            config,
            [
                {"name": "specs" if index == 0 else f"specs-{index + 1}", "folder": folder.resolve()}
                for index, folder in enumerate(folders)
            ],
        ),
    )
    configure_logging(settings.logging, file=data / "operator.log")
    child = RoomServerChild(
        data, host=host, port=server_port, tokens_file=data / "roomserver-tokens.json" if secure else None
    )
    return settings, child


async def _serve(settings: OperatorSettings) -> None:
    stop = stop_on_signals()
    async with serving(settings) as (_, _, task):
        console.print(f"operator listening on http://{settings.api.host}:{settings.api.port}")
        await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)


def _print_credentials(path: Path, credentials: Credentials) -> None:
    """Where the two tokens are and what each is for; the tokens themselves only when they are new and
    stderr is a terminal (never into a log file)."""
    shown = credentials.created and console.is_terminal
    lines = [
        (
            "operator.apiToken",
            "the operator API token: POST /apply, `roomop ... --operator`",
            "ROOMOP_API_TOKEN",
        ),
        (
            "roomServer.adminToken",
            "the room server admin token: the room server itself, one-shot `roomop plan/apply --server`",
            "ROOM_AUTH_TOKEN",
        ),
    ]
    tokens = {"ROOMOP_API_TOKEN": credentials.api_token, "ROOM_AUTH_TOKEN": credentials.admin_token}
    console.print(f"{'New credentials' if credentials.created else 'Credentials'} in {path} (mode 0600):")
    for key, meaning, variable in lines:
        console.print(f"  {key}: {meaning} (as {variable})", soft_wrap=True, highlight=False, markup=False)
        if shown:
            console.print(f"    export {variable}={tokens[variable]}", soft_wrap=True, highlight=False)


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


async def _up(
    settings: OperatorSettings, loaded: list[LoadedSpec], child: RoomServerChild, *, force: bool
) -> ExitCode:
    """Both services until a signal (0), or until the room server cannot be kept running (1)."""
    stop = stop_on_signals()
    await child.start()
    console.print(f"room server: {child.url} (pid {child.pid}, log {child.log_path})", highlight=False)
    supervisor = asyncio.create_task(child.supervise())
    try:
        async with serving(settings) as (operator, _, task):
            console.print(f"operator:    http://{settings.api.host}:{settings.api.port}  (API docs at /docs)")
            for item in loaded:
                await _apply_file(operator, item, force=force)
            console.print("Ctrl-C stops both services.")
            await _until_stopped(operator, stop, task, supervisor)
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)
        await child.stop()
        console.print("stopped the operator and the room server")
    if not supervisor.cancelled() and supervisor.exception() is not None:
        return ExitCode.ERROR
    return ExitCode.OK


async def _apply_file(operator: FastAPI, item: LoadedSpec, *, force: bool) -> None:
    """Apply one SPEC file through the controller and print one line of its outcome."""
    controller: Controller = operator.state.controller
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
        return
    result = await asyncio.shield(submission.request.done)
    for warning in submission.warnings:
        console.print(f"  [yellow]{escape(warning)}[/yellow]")
    if result is None:
        return
    verdict = "converged" if result.converged else (result.code or "not converged")
    revision = f"revision {submission.request.revision}" + (" (unchanged)" if submission.unchanged else "")
    skipped = skipped_summary(result.plan) if result.plan else ""
    console.print(
        f"applied {item.spec.room_id} v{item.spec.metadata.version} {revision}: {verdict}"
        + (f" ({skipped})" if skipped else ""),
        highlight=False,
    )
    for problem in [*result.errors, *result.warnings]:
        console.print(f"  [yellow]{escape(problem)}[/yellow]")


async def _until_stopped(
    operator: FastAPI, stop: asyncio.Event, task: asyncio.Task[None], supervisor: asyncio.Task[None]
) -> None:
    """Wait for a signal, the operator's end or the supervisor giving up (logged), with the live table
    on a terminal only."""
    waiter = asyncio.create_task(stop.wait())
    watched = {waiter, task, supervisor}
    live = Live(_summary(operator), console=console, refresh_per_second=1) if console.is_terminal else None
    with live or contextlib.nullcontext():
        while not any(t.done() for t in watched):
            await asyncio.wait(watched, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
            if live is not None:
                live.update(_summary(operator))
    waiter.cancel()
    if supervisor.done() and (problem := supervisor.exception()) is not None:
        log.error(str(problem))


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
