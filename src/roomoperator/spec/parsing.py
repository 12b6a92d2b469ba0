"""Hostile-input-safe YAML and JSON parsing into plain data, remembering where every value came from.

We never let a YAML library construct objects. We read ruamel.yaml's event stream (which does not
recurse and does not expand aliases) and build dicts, lists and scalars ourselves, so that:

- only the YAML 1.2 core tags are accepted (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`, `!!map`,
  `!!seq`, and `!!timestamp`, kept as text); any other tag is an error;
- the input is at most `MAX_DOCUMENT_BYTES` long and nested at most `MAX_DEPTH` deep;
- aliases are counted at their expanded size, so a "billion laughs" document is refused after a few
  thousand events (not after expanding it), and a recursive alias is refused;
- duplicate keys and non-string keys are errors, and merge keys (`<<: *base`) work.

JSON documents are YAML flow documents, so they go through the same path and get positions too.

ruamel.yaml's parser is pure Python and does most of the work, so two fast paths come first:

- `parse_json` reads text that looks like a JSON object with the stdlib `json` module, and gives its
  data only where the YAML path would give the same; a caller with something to report (an error, a
  warning) reads the text again with `parse_documents`, which knows the positions;
- `parse_documents` takes its events from libyaml's C parser when ruamel.yaml.clibz is installed, except
  for text holding what libyaml reads differently (`_LIBYAML_DIFFERS`), and asks the pure-Python parser
  again whenever anything goes wrong, so every message (and every refusal) is ruamel.yaml's own.

Longer than most modules on purpose: the event-stream builder, its limits and its two fast paths must
agree exactly (a property test checks that they do), and they are easiest to keep so side by side.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from io import StringIO
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.reader import Reader, ReaderError
from ruamel.yaml.resolver import VersionedResolver

try:
    from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined]
except ImportError:  # ruamel.yaml.clibz is not built here: the pure-Python parser does it all
    CParser = None

MAX_DOCUMENT_BYTES = 1 << 20
"""Largest spec text accepted (1 MiB); a room with thousands of members fits in a tenth of it."""
MAX_DEPTH = 32
"""Deepest nesting accepted; a RoomSpec needs 6 levels, resource configs get the rest."""
MAX_NODES = 1_000_000
"""Most values a document may hold once aliases are expanded (1 MiB of plain YAML holds at most ~500 000)."""

Path = tuple[str | int, ...]
Mark = tuple[int, int]  # 1-based line and column

_TAG = "tag:yaml.org,2002:"
_MERGE = object()  # the pending key of a mapping whose next value is a `<<` merge


class ParseError(Exception):
    """Text that is not an acceptable YAML/JSON document; `mark` is where the problem is in the text,
    `path` where it is in the data (JSON bodies, which have no positions to report)."""

    def __init__(self, message: str, mark: Mark | None = None, *, path: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.mark = mark
        self.path = path


@dataclass
class ParsedDocument:
    """One document of a stream (`index` counts from 0, empty ones included): its data and the position
    of each value and mapping key in it."""

    data: Any
    index: int
    values: dict[Path, Mark] = field(default_factory=dict)
    keys: dict[Path, Mark] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> Mark | None:
        """Where `path` is (its key when `key` and the path ends in one), else its nearest known ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            mark = self.values.get(path[:end])
            if mark is not None:
                return mark
        return None


@dataclass
class _Open:
    """A mapping or sequence whose end event has not come yet."""

    value: dict[str, Any] | list[Any]
    path: Path
    anchor: str | None
    weight: int = 1
    key: str | object | None = None  # mappings: the key waiting for its value
    merges: list[tuple[Any, Mark]] = field(default_factory=list)


def parse_documents(text: str) -> list[ParsedDocument]:
    """Every non-empty document of `text`, or ParseError for the first problem met."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ParseError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    if CParser is not None and not _LIBYAML_DIFFERS.search(text) and not Reader.NON_PRINTABLE.search(text):
        try:
            return list(_Builder().build(_c_events(text)))
        except (YAMLError, ParseError, _Unsure):
            pass  # the pure-Python parser has the messages (and the final say): ask it
    try:
        return list(_Builder().build(YAML(typ="safe", pure=True).parse(StringIO(text))))
    except MarkedYAMLError as error:
        message = " ".join(part for part in (error.context, error.problem) if part) or str(error)
        mark = error.problem_mark or error.context_mark
        raise ParseError(message, _mark(mark) if mark is not None else None) from error
    except ReaderError as error:  # a character YAML refuses, found before any mark is made: placed here
        message = str(error).strip().splitlines()[0]
        raise ParseError(message, _place(text, error.position)) from error
    except YAMLError as error:
        raise ParseError(str(error).strip().splitlines()[-1]) from error


_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
"""What YAML counts as one line break."""


def _place(text: str, position: int) -> Mark:
    """The line and column (1-based, as `_mark` gives them) of the character at `position` of `text`."""
    line, start = 1, 0
    for match in _LINE_BREAK.finditer(text, 0, position):
        line, start = line + 1, match.end()
    return line, position - start + 1


_JSON_MAX_KEY = 64
"""Longest key `parse_json` takes: even fully `\\u`-escaped, it stays inside YAML's 1024-character limit
on the text from a key to its colon (the YAML path refuses longer ones)."""
_NOT_LIKE_YAML = re.compile(
    r'"[ \r\n]*[\r\n][ \r\n]*:'  # a line break between a key and its colon: YAML refuses it
    r'|"[ \r\n]{32,}:'  # a key far from its colon: YAML refuses it past 1024 characters
    r"|[\t\x85\u2028\u2029]"  # tabs: YAML refuses some; line breaks to YAML, characters to JSON
    r"|\\[uU][dD][89a-fA-F]"  # surrogate escapes: YAML needs them paired, JSON does not
)


class _Unsure(Exception):
    """A fast path cannot vouch for its result: the pure-Python YAML parser decides."""


def parse_json(text: str) -> dict[str, Any] | None:
    """The data of a JSON object text, as `parse_documents` would give it, read by the fast stdlib parser;
    None whenever the text is not such a JSON object or the two parsers might not agree (anything
    unusual: duplicate keys, NaN, deep nesting, long keys, odd line breaks, surrogate escapes, characters
    YAML refuses), so that every problem is still found, with its position, by `parse_documents`."""
    if not text.lstrip(" \t\r\n").startswith("{") or len(text) > MAX_DOCUMENT_BYTES:
        return None
    if _NOT_LIKE_YAML.search(text) or Reader.NON_PRINTABLE.search(text):
        return None
    try:
        data = json.loads(
            text,
            object_pairs_hook=_json_object,
            parse_int=_json_number,
            parse_float=_json_number,
            parse_constant=_json_constant,
        )
    except (_Unsure, ValueError, RecursionError):
        return None
    if not isinstance(data, dict) or _beyond_limits(data) is not None:
        return None
    return data


def parse_json_body(text: str) -> Any:
    """The data of a JSON request body (HTTP: no positions are reported but for syntax errors), held to the
    limits `parse_documents` enforces: at most `MAX_DOCUMENT_BYTES`, `MAX_DEPTH` deep, `MAX_NODES` values,
    integers of at most `MAX_INT_DIGITS` digits, no `NaN` or `Infinity`. Raises ParseError (with the data
    path of the value beyond a limit)."""
    if len(text.encode("utf-8", errors="surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise ParseError(f"document is larger than {MAX_DOCUMENT_BYTES} bytes")
    try:
        data = json.loads(text, parse_int=_body_int, parse_constant=_body_constant)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}", (exc.lineno, exc.colno)) from None
    except RecursionError:
        raise ParseError(f"document is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # `_body_constant`'s refusal
        raise ParseError(str(exc)) from None
    problem = _beyond_limits(data)
    if problem is not None:
        raise problem
    if _SURROGATE_ESCAPE.search(text) and (where := _lone_surrogate(data)) is not None:
        raise ParseError("text holds an invalid character (a lone surrogate escape)", path=where)
    return data


_SURROGATE_ESCAPE = re.compile(r"\\[uU][dD][89a-fA-F]")


def _lone_surrogate(data: Any) -> Path | None:
    """Where a string (key or value) of `data` holds a lone surrogate, which no UTF-8 encoder writes."""
    stack: list[tuple[Any, Path]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return path
        elif isinstance(value, dict | list):
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                stack.append((item, (*path, key)))
                if isinstance(key, str):
                    stack.append((key, (*path, key)))
    return None


MAX_INT_DIGITS = 4300
"""Longest integer a JSON body may hold (Python's own limit for reading one)."""


@dataclass(frozen=True)
class _LongInt:
    """An integer of a JSON body too long to read, kept so that `_beyond_limits` names where it is."""

    digits: int


def _body_int(text: str) -> int | _LongInt:
    digits = len(text.lstrip("-"))
    return int(text) if digits <= MAX_INT_DIGITS else _LongInt(digits)


def _body_constant(text: str) -> Any:
    raise ValueError(f"{text} is not a JSON number")


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    mapping = dict(pairs)
    if len(mapping) != len(pairs) or any(len(key) > _JSON_MAX_KEY for key in mapping):
        raise _Unsure
    return mapping


def _json_number(text: str) -> Any:
    """A JSON number as the YAML path reads the same plain scalar."""
    tag = _plain_tag(text)
    try:
        return _construct(tag, text)
    except (ValueError, OverflowError, KeyError):
        raise _Unsure from None


def _json_constant(text: str) -> Any:
    raise _Unsure  # NaN, Infinity, -Infinity: strings to YAML


def _beyond_limits(data: Any) -> ParseError | None:
    """The first limit `data` goes beyond (nested deeper than `MAX_DEPTH`, more than `MAX_NODES` values, an
    integer too long to read), as a ParseError naming where; None when it is within them all."""
    total = 0
    stack: list[tuple[Any, Path]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, _LongInt):
            return ParseError(f"integer of {value.digits} digits (at most {MAX_INT_DIGITS})", path=path)
        if not isinstance(value, dict | list):
            continue
        if len(path) >= MAX_DEPTH:
            return ParseError(f"nested deeper than {MAX_DEPTH} levels", path=path)
        items = list(value.items() if isinstance(value, dict) else enumerate(value))
        total += 1 + len(items)
        if total > MAX_NODES:
            return ParseError(f"document holds more than {MAX_NODES} values", path=path)
        stack.extend((item, (*path, key)) for key, item in items if isinstance(item, dict | list | _LongInt))
    return None


_LIBYAML_DIFFERS = re.compile(
    r"[\t\x85\u2028\u2029]"  # tabs, and the line breaks YAML 1.2 dropped
    r"|[|>][-+1-9]{0,2}#"  # a comment right after a block scalar header: ruamel.yaml refuses it
    r"|(?:^|[\r\n])\.\.\."  # document end markers: libyaml takes a second one in a row
)
"""What libyaml (YAML 1.1) reads unlike ruamel.yaml (found by tests/spec/test_properties.py)."""


def _c_events(text: str) -> Iterator[Event]:
    """The events of libyaml's parser (ruamel.yaml.clibz): the same as ruamel.yaml's, several times faster."""
    assert CParser is not None
    parser = CParser(text)
    try:
        while parser.check_event():
            event = parser.get_event()
            if isinstance(event, ScalarEvent) and not event.value and not event.style:
                raise _Unsure  # an empty value: libyaml places it elsewhere on the line
            yield event
    finally:
        parser.dispose()


def _mark(mark: Any) -> Mark:
    return (mark.line + 1, mark.column + 1)


_RESOLVER = VersionedResolver(version=(1, 2))
_RESOLVED_FIRST_CHARS = frozenset(_RESOLVER.versioned_resolver)
"""The first characters of the plain scalars that YAML 1.2 may read as something else than a string."""


@lru_cache(maxsize=4096)
def _plain_tag(value: str) -> str:
    """The tag YAML 1.2 gives a plain (unquoted, untagged) scalar; most are strings, known by their start."""
    if None not in _RESOLVED_FIRST_CHARS and value[:1] not in _RESOLVED_FIRST_CHARS:
        return _TAG + "str"
    return str(_RESOLVER.resolve(ScalarNode, value, (True, False)))


class _Builder:
    """Turns ruamel.yaml events into plain data, one document at a time, enforcing the limits."""

    def __init__(self) -> None:
        self._start_document(0)

    def build(self, events: Iterable[Event]) -> Iterator[ParsedDocument]:
        index = 0
        for event in events:
            if isinstance(event, DocumentStartEvent):
                self._start_document(index)
            elif isinstance(event, DocumentEndEvent):
                if self._document.data is not None:  # empty documents (a stray `---`) are skipped
                    yield self._document
                index += 1
            else:
                self._event(event)

    def _start_document(self, index: int) -> None:
        """Anchors, limits and positions are per document."""
        self._document = ParsedDocument(data=None, index=index)
        self._stack: list[_Open] = []
        self._anchors: dict[str, tuple[Any, int]] = {}
        self._total = 0

    def _event(self, event: Event) -> None:
        mark = _mark(event.start_mark)
        if isinstance(event, ScalarEvent):
            self._count(1, mark)
            value = self._scalar(event, mark)
            if event.anchor:
                self._anchors[event.anchor] = (value, 1)
            self._add(value, 1, mark)
        elif isinstance(event, AliasEvent):
            if any(open_.anchor == event.anchor for open_ in self._stack):
                raise ParseError(f"recursive alias *{event.anchor} is not supported", mark)
            if event.anchor not in self._anchors:
                raise ParseError(f"undefined alias *{event.anchor}", mark)
            value, weight = self._anchors[event.anchor]
            self._count(weight, mark)
            self._add(value, weight, mark)
        elif isinstance(event, CollectionStartEvent):
            self._check_tag(event.tag, "map" if isinstance(event, MappingStartEvent) else "seq", mark)
            self._count(1, mark)
            if len(self._stack) >= MAX_DEPTH:
                raise ParseError(f"document is nested deeper than {MAX_DEPTH} levels", mark)
            path = self._container_path(mark)
            self._document.values[path] = mark
            container: dict[str, Any] | list[Any] = {} if isinstance(event, MappingStartEvent) else []
            self._stack.append(_Open(container, path, event.anchor))
        elif isinstance(event, MappingEndEvent | SequenceEndEvent):
            done = self._stack.pop()
            if isinstance(done.value, dict):
                self._merge(done)
            if done.anchor:
                self._anchors[done.anchor] = (done.value, done.weight)
            self._add(done.value, done.weight, None)

    def _container_path(self, mark: Mark) -> Path:
        """The path a mapping or sequence starting now will have."""
        if not self._stack:
            return ()
        parent = self._stack[-1]
        if isinstance(parent.value, list):
            return (*parent.path, len(parent.value))
        if parent.key is None:
            raise ParseError("mapping keys must be strings, not mappings or lists", mark)
        if parent.key is _MERGE:
            return parent.path
        assert isinstance(parent.key, str)
        return (*parent.path, parent.key)

    def _count(self, weight: int, mark: Mark) -> None:
        """Count values at their expanded size, so alias bombs are refused before anything is expanded."""
        self._total += weight
        if self._total > MAX_NODES:
            raise ParseError(
                f"document expands to more than {MAX_NODES} values (an alias expansion bomb?)", mark
            )

    def _add(self, value: Any, weight: int, mark: Mark | None) -> None:
        """Place a finished value in its parent (or as the document root); `mark` is None for containers."""
        if not self._stack:
            self._document.data = value
            if mark is not None:
                self._document.values[()] = mark
            return
        parent = self._stack[-1]
        parent.weight += weight
        if isinstance(parent.value, list):
            if mark is not None:
                self._document.values[(*parent.path, len(parent.value))] = mark
            parent.value.append(value)
        elif parent.key is None:
            self._take_key(parent, value, mark)
        elif parent.key is _MERGE:
            parent.merges.append((value, mark or self._document.position(parent.path) or (1, 1)))
            parent.key = None
        else:
            assert isinstance(parent.key, str)
            if mark is not None:
                self._document.values[(*parent.path, parent.key)] = mark
            parent.value[parent.key] = value
            parent.key = None

    def _take_key(self, parent: _Open, key: Any, mark: Mark | None) -> None:
        assert isinstance(parent.value, dict)
        assert mark is not None
        if key is _MERGE:
            parent.key = _MERGE
            return
        if not isinstance(key, str):
            raise ParseError(f"mapping keys must be strings (got {key!r}; quote it)", mark)
        path = (*parent.path, key)
        if key in parent.value:
            first = self._document.keys.get(path)
            where = f" (first at line {first[0]})" if first else ""
            raise ParseError(f"duplicate key {key!r}{where}", mark)
        self._document.keys[path] = mark
        parent.key = key

    def _merge(self, mapping: _Open) -> None:
        """Apply `<<` merges: keys written in the mapping win over merged ones, earlier merges over later."""
        assert isinstance(mapping.value, dict)
        for merged, mark in mapping.merges:
            sources = merged if isinstance(merged, list) else [merged]
            for source in sources:
                if not isinstance(source, dict):
                    raise ParseError("a merge key '<<' needs a mapping or a list of mappings", mark)
                for key, value in source.items():
                    if key not in mapping.value:
                        mapping.value[key] = value
                        self._document.keys.setdefault((*mapping.path, key), mark)
                        self._document.values.setdefault((*mapping.path, key), mark)

    def _check_tag(self, tag: str | None, kind: str, mark: Mark) -> None:
        if tag not in (None, "!", _TAG + kind):
            raise ParseError(f"tag {_show_tag(tag)} is not allowed (only plain YAML/JSON values are)", mark)

    def _scalar(self, event: ScalarEvent, mark: Mark) -> Any:
        tag: str | None = event.tag
        value: str = event.value
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            value = _join_surrogate_pairs(value, mark)
        if tag in (None, "!"):
            plain = bool(event.implicit and event.implicit[0]) and tag is None
            if not plain:
                return value
            tag = _plain_tag(value)
        if tag == _TAG + "merge" and event.tag is None:
            return _MERGE
        try:
            return _construct(tag, value)
        except (ValueError, OverflowError) as error:
            raise ParseError(
                f"{value[:40]!r} is not a valid {tag.removeprefix(_TAG)}: {error}", mark
            ) from None
        except KeyError:
            raise ParseError(
                f"tag {_show_tag(tag)} is not allowed (only plain YAML/JSON values are)", mark
            ) from None


def _join_surrogate_pairs(value: str, mark: Mark) -> str:
    """JSON writes astral characters as escaped surrogate pairs (`\\ud83d\\ude00`); YAML keeps them apart."""
    try:
        return value.encode("utf-16", "surrogatepass").decode("utf-16")
    except UnicodeDecodeError:
        raise ParseError("text holds an invalid character (a lone surrogate escape)", mark) from None


def _show_tag(tag: str | None) -> str:
    return "!!" + tag.removeprefix(_TAG) if tag and tag.startswith(_TAG) else repr(tag)


def _construct(tag: str, value: str) -> Any:
    """A YAML 1.2 core-schema scalar; KeyError for a tag we do not accept."""
    name = tag.removeprefix(_TAG) if tag.startswith(_TAG) else tag
    if name in ("str", "timestamp", "value"):
        return value
    if name == "null":
        if value not in ("", "~", "null", "Null", "NULL"):
            raise ValueError("expected null")
        return None
    if name == "bool":
        if value.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return value.lower() == "true"
    if name == "int":
        digits = value.replace("_", "")
        sign, body = (digits[0], digits[1:]) if digits[:1] in "+-" and digits else ("", digits)
        base = {"0x": 16, "0o": 8, "0b": 2}.get(body[:2].lower(), 10)
        if base == 10 and len(body) > MAX_INT_DIGITS:
            raise ValueError(f"{len(body)} digits (at most {MAX_INT_DIGITS})")
        number = int(body[2:] if base != 10 else body, base)
        return -number if sign == "-" else number
    if name == "float":
        lowered = value.lower().replace("_", "")
        if lowered.lstrip("+-") in (".inf", ".nan"):
            special = math.inf if "inf" in lowered else math.nan
            return -special if lowered.startswith("-") else special
        return float(lowered)
    raise KeyError(tag)
