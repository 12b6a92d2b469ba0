"""Timestamps on the wire: ISO-8601 UTC ending in `Z`, microsecond precision (sortable as text)."""

from __future__ import annotations

import datetime as dt


def now_iso() -> str:
    return to_iso(dt.datetime.now(dt.UTC))


def to_iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str) -> dt.datetime | None:
    """An ISO date-time (naive means UTC, as the reference reads `since`), or None when unparseable or
    outside the years 1-9999 once in UTC (`9999-12-31T23:59:59-23:59`)."""
    try:
        moment = dt.datetime.fromisoformat(text)
        return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    except (ValueError, OverflowError):
        return None
