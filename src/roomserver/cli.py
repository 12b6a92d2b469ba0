"""`roomserver serve`: run the room server with uvicorn."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from pydantic import ValidationError

from roomcontract.tokens import TokenConfigError
from roomserver.api.connections import uvicorn_config
from roomserver.app import create_app
from roomserver.server import token_registry
from roomserver.settings import MIB, ServerSettings


class _Server(uvicorn.Server):
    """uvicorn, ending the open event streams first so that shutdown does not wait for them."""

    def __init__(self, config: uvicorn.Config, *, on_shutdown: Callable[[], None]):
        super().__init__(config)
        self._on_shutdown = on_shutdown

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._on_shutdown()
        await super().shutdown(sockets)


app = typer.Typer(
    name="roomserver",
    help="The room server managed by RoomOperator.",
    add_completion=False,
    # Plain click help, as `roomop`'s: typer's rich help shows every flag as `--flag <bool>`.
    rich_markup_mode=None,
)


@app.callback()
def _root() -> None:
    """The room server managed by RoomOperator."""


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind (non-loopback needs tokens).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind (0 = any free port).")] = 5000,
    data: Annotated[Path, typer.Option("--data", help="Data folder (SQLite database and blobs).")] = Path(
        ".roomserver"
    ),
    tokens: Annotated[Path | None, typer.Option("--tokens", help="Tokens file (YAML or JSON).")] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option("--insecure-no-auth", help="Every request holds every scope (loopback only).")
    ] = False,
    max_upload_bytes: Annotated[int, typer.Option(help="Largest artifact upload, in bytes.")] = 100 * MIB,
) -> None:
    """Serve the REST API and the event stream until interrupted."""
    try:
        settings = ServerSettings(
            host=host,
            port=port,
            data_dir=data,
            tokens_file=tokens,
            insecure_no_auth=insecure_no_auth,
            max_upload_bytes=max_upload_bytes,
        )
        registry = token_registry(settings)  # fail fast on a bad tokens file, before binding
    except ValidationError as exc:
        typer.echo(f"roomserver: {'; '.join(str(e['msg']) for e in exc.errors())}", err=True)
        raise typer.Exit(2) from None
    except TokenConfigError as exc:
        typer.echo(f"roomserver: tokens: {exc}", err=True)
        raise typer.Exit(2) from None
    if not settings.insecure_no_auth and not len(registry):
        typer.echo(
            "roomserver: warning: no tokens (--tokens, ROOMSERVER_TOKENS): every API call will be 401",
            err=True,
        )
    application = create_app(settings)
    config = uvicorn_config(application, settings, log_level="info")
    _Server(config, on_shutdown=application.state.roomserver.feed.close).run()


def main() -> None:
    app()
