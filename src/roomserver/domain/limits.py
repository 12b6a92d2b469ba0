"""Bounds on what a caller may send, and parsers that hold to them (`docs/contract.md`, "Limits").

The declared fields' bounds (display names, capabilities, tags...) are the shared contract's,
`roomcontract/limits.py`, so the operator checks its specs against the same numbers.

Python's own helpers are too lenient for input from the wire: `str.isdigit()` accepts `²`, `int()` reads
any number of digits (SQLite stores at most 64 bits), `json.loads` recurses until `RecursionError`, reads
`NaN` and `1e999` (which no JSON encoder writes back) and keeps lone surrogates (which no UTF-8 encoder
writes). Every count, header number and JSON document a route reads goes through the functions here, so
bad input is one clear 400 and never an exception of the storage or the response encoder.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

MAX_INTEGER: Final = 2**63 - 1
"""Largest number a query parameter or header may name (SQLite's INTEGER)."""

MAX_JSON_DEPTH: Final = 64
"""Deepest nesting of a JSON document a route decodes itself (the upload `spec`, `parents`, promote)."""
MAX_METADATA_DEPTH: Final = 32
"""Deepest nesting of artifact `metadata` (the object itself is level 1)."""
MAX_METADATA_BYTES: Final = 64 * 1024
"""Largest artifact `metadata`, as compact JSON."""
MAX_PARENTS: Final = 64
MAX_PARENT_LENGTH: Final = 256

MAX_ARTIFACTS_PER_ENTITY: Final = 1_000_000
"""Largest value of the room policy `maxArtifactsPerEntity`."""


class InputError(ValueError):
    """Input outside its bounds; the message names the field. Routes turn it into their 400 body."""


def parse_count(text: str, *, field: str, minimum: int = 0) -> int:
    """A decimal integer of ASCII digits between `minimum` and MAX_INTEGER (surrounding blanks allowed)."""
    stripped = text.strip()
    word = "positive" if minimum == 1 else "non-negative"
    if not (stripped.isascii() and stripped.isdigit()):
        raise InputError(f"{field} must be a {word} integer")
    digits = stripped.lstrip("0") or "0"
    if len(digits) > len(str(MAX_INTEGER)) or int(digits) > MAX_INTEGER:  # int() only of short digits
        raise InputError(f"{field} must be at most {MAX_INTEGER}")
    if int(digits) < minimum:
        raise InputError(f"{field} must be a {word} integer")
    return int(digits)


def check_text(value: str, *, field: str, max_length: int | None = None) -> str:
    """A string that encodes as UTF-8 (no lone surrogates) and, with `max_length`, is not longer."""
    if max_length is not None and len(value) > max_length:
        raise InputError(f"{field} must be at most {max_length} characters (got {len(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{field} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_list(values: list[Any], *, field: str, max_items: int, max_length: int) -> list[str]:
    """A list of at most `max_items` strings, each checked by `check_text`."""
    if len(values) > max_items:
        raise InputError(f"{field} must have at most {max_items} items (got {len(values)})")
    for index, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(f"{field}[{index}] must be a string")
        check_text(value, field=f"{field}[{index}]", max_length=max_length)
    return values


def _reject_constant(name: str) -> float:
    raise InputError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise InputError(f"{text[:32]} is outside the range of a JSON number")
    return number


def check_json_value(value: Any, *, field: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Walk a decoded document without recursion: at most `max_depth` levels, text that encodes."""
    if isinstance(value, str) and not value.isascii():
        check_text(value, field=field)
    pending: list[tuple[Any, int]] = [(value, 1)] if isinstance(value, dict | list) else []
    while pending:  # containers only; ASCII text (nearly all of it) needs no encoding test
        item, depth = pending.pop()
        if depth > max_depth:
            raise InputError(f"{field} is nested deeper than {max_depth} levels")
        for key, inner in item.items() if isinstance(item, dict) else enumerate(item):
            if isinstance(key, str) and not key.isascii():
                check_text(key, field=f"{field} key")
            if isinstance(inner, dict | list):
                pending.append((inner, depth + 1))
            elif isinstance(inner, str) and not inner.isascii():
                check_text(inner, field=field)
    return value


def load_json(raw: bytes | str, *, field: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Decode a JSON document from the wire, or raise InputError naming `field`.

    Refused: invalid JSON or UTF-8, nesting deeper than `max_depth` (also when so deep that the decoder
    itself gives up), `NaN`/`Infinity` and numbers out of float range, integers over 4,300 digits, and
    strings with lone surrogates.
    """
    try:
        value = json.loads(raw, parse_constant=_reject_constant, parse_float=_finite)
    except RecursionError:
        raise InputError(f"{field} is nested deeper than {max_depth} levels") from None
    except InputError as exc:
        raise InputError(f"{field}: {exc}") from None
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, and int() past its digit limit
        raise InputError(f"{field} must be valid JSON") from None
    return check_json_value(value, field=field, max_depth=max_depth)


def check_metadata(metadata: Any, *, field: str) -> dict[str, Any] | None:
    """Artifact metadata: null or an object, at most MAX_METADATA_DEPTH deep and MAX_METADATA_BYTES long."""
    if metadata is None:
        return None
    if not isinstance(metadata, dict):
        raise InputError(f"{field} must be a JSON object")
    check_json_value(metadata, field=field, max_depth=MAX_METADATA_DEPTH)
    size = len(json.dumps(metadata, separators=(",", ":")).encode())
    if size > MAX_METADATA_BYTES:
        raise InputError(f"{field} must be at most {MAX_METADATA_BYTES} bytes as JSON (got {size})")
    return metadata
