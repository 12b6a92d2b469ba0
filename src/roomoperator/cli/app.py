"""The `roomop` typer application that every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="roomop",
    help="RoomOperator: keep collaboration rooms exactly as their RoomSpec says.",
    no_args_is_help=True,
    add_completion=False,
)
