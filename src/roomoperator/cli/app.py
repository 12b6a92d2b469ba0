"""The `roomop` typer application that every command module registers on."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

app = typer.Typer(
    name="roomop",
    help="RoomOperator: keep collaboration rooms exactly as their RoomSpec says.",
    no_args_is_help=True,
    add_completion=False,
    # Plain click help: typer's rich help shows every flag as `--yes <bool>`, as if it took a value.
    rich_markup_mode=None,
)


class OutputFormat(StrEnum):
    """How a command prints its result: `text` for people (tables, colour on a terminal), `json` for tools."""

    text = "text"
    json = "json"


OutputOption = Annotated[
    OutputFormat, typer.Option("--output", "-o", help="text (for people) or json (for tools).")
]
