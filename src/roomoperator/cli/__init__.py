"""`roomop` command line: validate, schema, plan, apply, up, serve, status, audit."""

from __future__ import annotations

from roomoperator.cli import engine, service, validate  # noqa: F401  (modules register their commands)
from roomoperator.cli.app import app


def main() -> None:
    app()
