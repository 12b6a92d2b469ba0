"""`roomop validate` (check spec files, report every problem with its place) and `roomop schema`.

The report for people is drawn by `cli/rendering.py`; `--output json` prints `_report` instead.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console

from roomoperator.cli.app import OutputFormat, OutputOption, app
from roomoperator.cli.rendering import print_validation
from roomoperator.model.codes import ExitCode
from roomoperator.spec.errors import SpecError, SpecIssue
from roomoperator.spec.loading import LoadedSpec, load_file
from roomoperator.spec.schema import json_schema


@app.command()
def validate(
    files: Annotated[list[str], typer.Argument(help="RoomSpec files (YAML or JSON); '-' reads stdin.")],
    output: OutputOption = OutputFormat.text,
) -> None:
    """Check RoomSpec files and report every mistake at once.

    Prints one summary line per valid room, or every error as FILE:LINE:COL: field.path: message.
    Exit 0 when every file is valid, 1 otherwise.
    """
    rooms: list[LoadedSpec] = []
    errors: list[SpecIssue] = []
    for file in files:
        try:
            rooms.extend(load_file(file))
        except SpecError as error:
            errors.extend(error.issues)
    errors.extend(_rooms_declared_twice(rooms))
    if output is OutputFormat.json:
        typer.echo(json.dumps(_report(rooms, errors), indent=2))
    else:
        print_validation(Console(highlight=False, soft_wrap=True), rooms, errors)
    if errors:
        raise typer.Exit(ExitCode.ERROR)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a RoomSpec, for editors and CI.

    The committed copy is schemas/roomspec.schema.json; docs/spec.md says how editors use it.
    """
    typer.echo(json.dumps(json_schema(), indent=2))


def _rooms_declared_twice(rooms: list[LoadedSpec]) -> list[SpecIssue]:
    first: dict[str, LoadedSpec] = {}
    issues = []
    for room in rooms:
        earlier = first.setdefault(room.spec.room_id, room)
        if earlier is not room and earlier.source != room.source:
            message = f"room {room.spec.room_id!r} is also declared in {earlier.source}"
            issues.append(SpecIssue(room.source, "spec.roomId", message))
    return issues


def _report(rooms: list[LoadedSpec], errors: list[SpecIssue]) -> dict[str, object]:
    return {
        "valid": not errors,
        "rooms": [
            {
                "source": room.source,
                "roomId": room.spec.room_id,
                "name": room.spec.metadata.name,
                "version": room.spec.metadata.version,
                "entities": len(room.spec.spec.entities),
                "artifacts": len(room.spec.spec.artifacts),
                "resources": len(room.spec.spec.resources),
                "warnings": [warning.to_json() for warning in room.warnings],
            }
            for room in rooms
        ],
        "errors": [error.to_json() for error in errors],
    }
