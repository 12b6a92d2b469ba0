"""Loading RoomSpecs from files, stdin, strings and HTTP bodies, and writing them back as YAML.

Every entry point returns validated `RoomSpec`s or raises one `SpecError` holding every problem found,
each with its source, field path and (for text) line and column. Nothing else escapes for bad input.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.representer import SafeRepresenter

from roomoperator.spec.errors import SpecError, SpecIssue
from roomoperator.spec.models import RoomSpec
from roomoperator.spec.parsing import MAX_DOCUMENT_BYTES, ParseError, parse_documents, parse_json
from roomoperator.spec.validation import validate_document

STDIN = "-"


@dataclass(frozen=True)
class LoadedSpec:
    """A valid spec, where it came from, the folder its `seedFrom` paths resolve against, and its warnings."""

    spec: RoomSpec
    source: str
    base_dir: Path | None
    warnings: tuple[SpecIssue, ...] = ()


def load_file(path: Path | str) -> list[LoadedSpec]:
    """Every room of a YAML or JSON file (`-` reads stdin, and seeds then resolve against the working dir)."""
    if str(path) == STDIN:
        source, base_dir = "<stdin>", Path.cwd()
        raw = sys.stdin.buffer.read(MAX_DOCUMENT_BYTES + 1)
    else:
        file = Path(path)
        source, base_dir = str(path), file.resolve().parent
        try:
            with file.open("rb") as stream:
                raw = stream.read(MAX_DOCUMENT_BYTES + 1)
        except OSError as error:
            raise SpecError(
                [SpecIssue(source, "", f"cannot read the file: {error.strerror or error}")]
            ) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise SpecError([SpecIssue(source, "", f"document is larger than {MAX_DOCUMENT_BYTES} bytes")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        col = error.start - (raw.rfind(b"\n", 0, error.start) + 1) + 1
        raise SpecError([SpecIssue(source, "", "is not UTF-8 text", line, col)]) from None
    return load_text(text, source=source, base_dir=base_dir)


def load_text(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> list[LoadedSpec]:
    """Every room of a YAML or JSON text (several `---` documents give several rooms)."""
    data = parse_json(text)
    if data is not None:
        checked = validate_document(data, source=source, base_dir=base_dir)
        if checked.spec is not None and not checked.warnings:
            return [LoadedSpec(checked.spec, source, base_dir)]
        # Something to report: the YAML path reads the text again and knows where everything is.
    try:
        documents = parse_documents(text)
    except ParseError as error:
        line, col = error.mark if error.mark is not None else (None, None)
        raise SpecError([SpecIssue(source, "", error.message, line, col)]) from None
    if not documents:
        raise SpecError([SpecIssue(source, "", "holds no RoomSpec document")])
    loaded: list[LoadedSpec] = []
    errors: list[SpecIssue] = []
    rooms: dict[str, int] = {}
    for document in documents:
        checked = validate_document(document.data, source=source, base_dir=base_dir, document=document)
        errors.extend(checked.errors)
        if checked.spec is None:
            continue
        room_id = checked.spec.room_id
        if room_id in rooms:
            line, col = document.position(("spec", "roomId")) or (None, None)
            message = f"room {room_id!r} is already declared by document {rooms[room_id]} of this file"
            errors.append(SpecIssue(source, "spec.roomId", message, line, col))
        rooms.setdefault(room_id, document.index + 1)
        loaded.append(LoadedSpec(checked.spec, source, base_dir, tuple(checked.warnings)))
    if errors:
        raise SpecError(errors)
    return loaded


def load_data(data: object, *, source: str = "<request>", base_dir: Path | None = None) -> RoomSpec:
    """Validate an already-parsed document (an HTTP JSON body); errors name field paths, not positions."""
    return check_data(data, source=source, base_dir=base_dir).spec


def check_data(data: object, *, source: str = "<request>", base_dir: Path | None = None) -> LoadedSpec:
    """`load_data`, with the document's warnings."""
    checked = validate_document(data, source=source, base_dir=base_dir)
    if checked.spec is None:
        raise SpecError(checked.errors)
    return LoadedSpec(checked.spec, source, base_dir, tuple(checked.warnings))


class _Representer(SafeRepresenter):
    """Double-quotes strings holding YAML line breaks beyond `\\n`: ruamel would write NEL (U+0085) raw in
    single quotes, where a reader folds it into a space."""


def _represent_str(representer: SafeRepresenter, value: str) -> ScalarNode:
    style = '"' if any(char in value for char in "\x85\u2028\u2029") else None
    node: ScalarNode = representer.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


_Representer.add_representer(str, _represent_str)


def dump_yaml(spec: RoomSpec) -> str:
    """The spec as a YAML document (camelCase keys, defaults left out); `load_text` reads it back equal."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Representer = _Representer
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    document: dict[str, Any] = {"apiVersion": spec.api_version, "kind": spec.kind}
    document.update(spec.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    stream = StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()
