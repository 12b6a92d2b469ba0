"""Structured logs with structlog: JSON lines when stderr is not a terminal, readable text when it is,
and with `file` (`roomop up`: `<data>/operator.log`) every line also appended to that file as JSON.

Run-scoped context (`correlation_id`, `room_id`) is bound with structlog's contextvars, so every line a
run logs, the engine's included, carries it. Lines go to `sys.stderr` as it is when each is written, so
a live terminal display that redirects stderr (rich's `Live`, `roomop up`) prints them above itself.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog

from roomoperator.settings import LoggingSettings


class _Lines:
    """A structlog logger writing each rendered line to the current `sys.stderr`."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = msg


class _Mirror:
    """A processor appending every event to a file as one JSON line (whatever the terminal shows)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, _: Any, __: str, event: structlog.typing.EventDict) -> structlog.typing.EventDict:
        self._stream.write(json.dumps(event, default=str) + "\n")
        self._stream.flush()
        return event


def configure_logging(settings: LoggingSettings, *, file: Path | None = None) -> None:
    """Configure structlog for this process; `file`: also append every line to it as JSON."""
    level = logging.getLevelNamesMapping().get(settings.level.upper(), logging.INFO)
    as_json = settings.json_output if settings.json_output is not None else not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer()
    )
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        processors.append(_Mirror(file.open("a", encoding="utf-8")))  # open for the process's life
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: _Lines(),
        cache_logger_on_first_use=True,
    )
