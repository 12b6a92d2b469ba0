"""Timestamps on the wire: ISO-8601 UTC ending in `Z`, microsecond precision (sortable as text)."""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    return to_iso(dt.datetime.now(dt.UTC))


def to_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> dt.datetime | None:
    """An ISO date-time (naive means UTC, as the reference reads `since`), or None when unparseable."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment
