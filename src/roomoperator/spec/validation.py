"""RoomSpec validation: parsed data in, a RoomSpec or every problem (with its field path and position) out.

Two passes over the same document, so one run reports everything:

1. the pydantic models check each field (types, enums, identifier formats, unknown keys), and their
   errors are rewritten into our messages: the reference RoomSpecValidator's texts where it has one
   (`RoomId is required`, `Artifact x requires Type`, ...), "did you mean" hints for unknown keys;
2. the cross-field rules read the raw data, so they run even where a field is broken: unique ids,
   `visibility: owner` needs `ownerUserId`, `dependsOn` names existing things without cycles, and
   `seedFrom` stays inside the spec's folder (symlinks followed) when that folder is known.
"""

from __future__ import annotations

import difflib
import json
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from pathlib import Path as FsPath
from typing import Any, Union, get_args, get_origin

from pydantic import AliasChoices, BaseModel, ValidationError
from pydantic_core import ErrorDetails

from roomoperator.spec.errors import SpecIssue
from roomoperator.spec.models import ID_FORMATS, RoomSpec
from roomoperator.spec.parsing import Mark, ParsedDocument, Path
from roomoperator.spec.seeds import SeedPathError, check_seed_path, resolve_seed_path

MAX_ISSUES = 100
"""Most errors reported per document: enough to fix a file, not a megabyte of answer to a hostile one."""

_REQUIRED = {
    ("spec", "roomId"): "RoomId is required",
    ("spec", "entities", "*", "id"): "Entity Id is required",
    ("spec", "artifacts", "*", "name"): "Artifact Name is required",
    ("spec", "artifacts", "*", "type"): "Artifact {name} requires Type",
    ("spec", "artifacts", "*", "workspace"): "Artifact {name} requires Workspace",
}
"""The reference RoomSpecValidator's messages for a missing or blank value, by field path."""

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}

_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


@dataclass
class Checked:
    """The outcome of validating one document: the spec when there are no errors, and the warnings."""

    spec: RoomSpec | None
    errors: list[SpecIssue] = field(default_factory=list)
    warnings: list[SpecIssue] = field(default_factory=list)


def validate_document(
    data: Any,
    *,
    source: str,
    base_dir: FsPath | None = None,
    document: ParsedDocument | None = None,
) -> Checked:
    """Validate one parsed document; never raises for bad input."""

    def issue(path: Path, message: str, *, key: bool = False) -> SpecIssue:
        mark: Mark | None = document.position(path, key=key) if document is not None else None
        line, col = mark if mark is not None else (None, None)
        return SpecIssue(source, format_path(path), message, line, col)

    if not isinstance(data, dict):
        shown = _show(data)
        message = (
            f"a RoomSpec document must be a mapping with apiVersion, kind, metadata and spec (got {shown})"
        )
        return Checked(None, [issue((), message)])
    checked = Checked(None)
    try:
        spec = RoomSpec.model_validate(data, by_alias=True, by_name=False)
    except ValidationError as error:
        spec = None
        for detail in error.errors():
            path, message, at_key = _explain(detail, data)
            checked.errors.append(issue(path, message, key=at_key))
    checked.errors.extend(issue(path, message) for path, message in _cross_checks(data, base_dir))
    checked.errors.sort(key=lambda found: (found.line or 0, found.col or 0))
    if len(checked.errors) > MAX_ISSUES:
        hidden = len(checked.errors) - MAX_ISSUES
        checked.errors[MAX_ISSUES:] = [issue((), f"{hidden} more errors not shown")]
    checked.warnings.extend(issue(path, message) for path, message in _warnings(data, base_dir))
    if not checked.errors:
        checked.spec = spec
    return checked


def format_path(path: Path) -> str:
    """`("spec", "entities", 2, "kind")` -> `spec.entities[2].kind`; odd keys are quoted: `labels["a/b"]`."""
    text = ""
    for step in path:
        if isinstance(step, int):
            text += f"[{step}]"
        elif _PLAIN_KEY.match(step):
            text += f".{step}" if text else step
        else:
            text += f"[{json.dumps(step)}]"
    return text


def _explain(detail: ErrorDetails, data: Any) -> tuple[Path, str, bool]:
    """A pydantic error as (path, our message, whether the position is the key's)."""
    path: Path = tuple(detail["loc"])
    kind = detail["type"]
    raw = _get(data, path)
    pattern = tuple("*" if isinstance(step, int) else step for step in path)
    required = _REQUIRED.get(pattern)
    if required and (kind == "missing" or (isinstance(raw, str) and not raw.strip())):
        name = _get(data, (*path[:-1], "name"))
        message = " ".join(required.format(name=name if isinstance(name, str) else "").split())
        return path, message, kind != "missing"
    if kind == "missing":
        return path, "is required", False
    if kind == "extra_forbidden":
        return path, _unknown_key(path), True
    got = _show(raw)
    ctx = detail.get("ctx", {})
    if kind == "literal_error":
        choices = ", ".join(str(choice) for choice in get_args(_annotation_at(path)))
        return path, f"must be one of {choices} (got {got})", False
    if kind == "greater_than_equal" and path == ("metadata", "version"):
        return path, f"Spec version must be positive (got {got})", False
    if kind == "greater_than_equal":
        return path, f"must be >= {ctx['ge']} (got {got})", False
    if kind == "less_than_equal":
        return path, f"must be at most {ctx['le']} (got {got})", False
    if kind == "string_pattern_mismatch":
        described = ID_FORMATS.get(ctx["pattern"], f"a string matching {ctx['pattern']}")
        return path, f"must be {described} (got {got})", False
    if kind == "string_too_long":
        return path, f"must be at most {ctx['max_length']} characters (got {len(raw)})", False
    if kind == "too_long":
        return path, f"must have at most {ctx['max_length']} items (got {ctx['actual_length']})", False
    if kind == "value_error":
        return path, str(ctx["error"]), False
    if kind in _TYPE_WORDS:
        return path, f"must be {_TYPE_WORDS[kind]} (got {got})", False
    message = detail["msg"]
    return path, f"{message[:1].lower()}{message[1:]} (got {got})", False


def _unknown_key(path: Path) -> str:
    key = str(path[-1])
    allowed = _keys_of(_annotation_at(path[:-1]))
    folded = {known.lower().replace("_", ""): known for known in allowed}
    guess = folded.get(key.lower().replace("_", "")) or next(
        iter(difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)), None
    )
    if guess is not None:
        return f"unknown key {key!r} (did you mean {guess!r}?)"
    return f"unknown key {key!r} (allowed: {', '.join(allowed)})"


def _annotation_at(path: Path) -> Any:
    """The declared type of the field at `path`, walking down from RoomSpec."""
    current: Any = RoomSpec
    for step in path:
        current = unwrap(current)
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        fields = dict(field_aliases(current))
        if step not in fields:
            return None
        current = fields[step].annotation
    return unwrap(current)


def unwrap(annotation: Any) -> Any:
    """`tuple[X, ...]`, `list[X]` and `X | None` -> X; anything else unchanged."""
    origin = get_origin(annotation)
    if origin in (tuple, list):
        return unwrap(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        rest = [arg for arg in get_args(annotation) if arg is not type(None)]
        return unwrap(rest[0]) if len(rest) == 1 else annotation
    return annotation


def field_aliases(model: type[BaseModel]) -> Iterator[tuple[str, Any]]:
    """Each key `model` takes (every choice of an `AliasChoices`) with its field's info."""
    for name, info in model.model_fields.items():
        if isinstance(info.validation_alias, AliasChoices):
            for choice in info.validation_alias.choices:
                yield str(choice), info
        else:
            yield info.alias or name, info


def _keys_of(model: Any) -> list[str]:
    if isinstance(model, type) and issubclass(model, BaseModel):
        return [alias for alias, _ in field_aliases(model)]
    return []


def _cross_checks(data: dict[str, Any], base_dir: FsPath | None) -> Iterator[tuple[Path, str]]:
    """The rules that look at more than one field, on the raw data (so they run whatever else is wrong)."""
    body = data.get("spec")
    if not isinstance(body, dict):
        return
    entities = _records(body, "entities")
    artifacts = _records(body, "artifacts")
    resources = _records(body, "resources")
    yield from _duplicates(entities, "entities", "id", "Duplicate entity Id: {}")
    yield from _duplicates(artifacts, "artifacts", "name", "Duplicate artifact name: {}")
    yield from _duplicates(resources, "resources", "name", "Duplicate resource name: {}")
    for index, entity in entities:
        owner = entity.get("ownerUserId")
        if entity.get("visibility") == "owner" and not (isinstance(owner, str) and owner.strip()):
            yield (
                ("spec", "entities", index, "ownerUserId"),
                f"Entity {entity.get('id')} with visibility=owner requires OwnerUserId",
            )
    artifact_names = {name for _, artifact in artifacts if isinstance(name := artifact.get("name"), str)}
    entity_ids = {ident for _, entity in entities if isinstance(ident := entity.get("id"), str)}
    graph: dict[str, set[str]] = {}
    for index, artifact in artifacts:
        path: Path = ("spec", "artifacts", index)
        for dep_index, dependency in _strings(artifact.get("dependsOn")):
            if dependency not in artifact_names:
                yield (*path, "dependsOn", dep_index), f"names no artifact of this spec (got {dependency!r})"
            elif isinstance(artifact.get("name"), str):
                graph.setdefault(artifact["name"], set()).add(dependency)
        seed = artifact.get("seedFrom")
        if base_dir is not None and isinstance(seed, str):
            yield from _seed_escape(base_dir, seed, (*path, "seedFrom"))
    names = {name: index for index, artifact in artifacts if isinstance(name := artifact.get("name"), str)}
    yield from _cycles(graph, names)
    for index, resource in resources:
        for dep_index, dependency in _strings(resource.get("dependsOn")):
            if dependency not in entity_ids | artifact_names:
                yield (
                    ("spec", "resources", index, "dependsOn", dep_index),
                    f"names no entity or artifact of this spec (got {dependency!r})",
                )


DM_VISIBILITY_NOT_SET = "dmVisibilityDefault not set, will default to 'team'"
REFERENCE_WARNINGS = frozenset({DM_VISIBILITY_NOT_SET})
"""Warning texts of the reference's validator, answered as they are (its clients compare them)."""


def _warnings(data: dict[str, Any], base_dir: FsPath | None) -> Iterator[tuple[Path, str]]:
    """What is allowed but probably not meant: the reference's policies warning, seed files not there yet."""
    policies = _get(data, ("spec", "policies"))
    chosen = policies.get("dmVisibilityDefault") if isinstance(policies, dict) else None
    if chosen is None or (isinstance(chosen, str) and not chosen.strip()):
        yield ("spec", "policies"), DM_VISIBILITY_NOT_SET
    body = data.get("spec")
    body = body if isinstance(body, dict) else {}
    for index, resource in _records(body, "resources"):
        config = resource.get("config")
        if not (isinstance(config, dict) and ("endpoint" in config or "url" in config)):
            yield (
                ("spec", "resources", index, "config"),
                "no endpoint: the operator cannot load this resource's MCP provider without its URL",
            )
    if base_dir is None:
        return
    for index, artifact in _records(body, "artifacts"):
        seed = artifact.get("seedFrom")
        if not isinstance(seed, str):
            continue
        try:
            found = resolve_seed_path(base_dir, seed).is_file()
        except SeedPathError:
            continue  # an error already
        except OSError as error:
            problem = error.strerror or type(error).__name__
            yield ("spec", "artifacts", index, "seedFrom"), f"file {seed!r} cannot be looked at ({problem})"
            continue
        if not found:
            yield (
                ("spec", "artifacts", index, "seedFrom"),
                f"file {seed!r} not found (yet): applying will fail its pre-checks",
            )


def _seed_escape(base_dir: FsPath, seed: str, path: Path) -> Iterator[tuple[Path, str]]:
    try:
        check_seed_path(seed)
    except SeedPathError:
        return  # the model's own check reports this one
    try:
        resolve_seed_path(base_dir, seed)
    except SeedPathError as error:
        yield path, str(error)


def _cycles(graph: dict[str, set[str]], positions: dict[Any, int]) -> Iterator[tuple[Path, str]]:
    """One error per dependency cycle, on the dependsOn of the artifact that starts it."""
    while True:
        try:
            TopologicalSorter(graph).prepare()
        except CycleError as error:
            cycle: list[str] = error.args[1]
            yield (
                ("spec", "artifacts", positions[cycle[0]], "dependsOn"),
                f"dependsOn forms a cycle: {' -> '.join(cycle)}",
            )
            graph.pop(cycle[0], None)
            for dependencies in graph.values():
                dependencies.discard(cycle[0])
        else:
            return


def _duplicates(
    records: list[tuple[int, dict[str, Any]]], section: str, key: str, message: str
) -> Iterator[tuple[Path, str]]:
    seen: set[str] = set()
    for index, record in records:
        value = record.get(key)
        if isinstance(value, str) and value.strip():
            if value in seen:
                yield ("spec", section, index, key), message.format(value)
            seen.add(value)


def _records(body: dict[str, Any], section: str) -> list[tuple[int, dict[str, Any]]]:
    items = body.get(section)
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, dict)]


def _strings(items: Any) -> list[tuple[int, str]]:
    if not isinstance(items, list):
        return []
    return [(index, item) for index, item in enumerate(items) if isinstance(item, str)]


def _get(data: Any, path: Path) -> Any:
    for step in path:
        if isinstance(step, int) and isinstance(data, list) and 0 <= step < len(data):
            data = data[step]
        elif isinstance(step, str) and isinstance(data, dict):
            data = data.get(step)
        else:
            return None
    return data


def _show(value: Any) -> str:
    """A value as the user wrote it, short: `'robot'`, `null`, `true`, `a mapping`."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."
