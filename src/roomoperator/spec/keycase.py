"""Case-insensitive JSON property names, as the reference's ASP.NET Core web defaults matched them.

The operator's HTTP API takes `{"Spec": {"ApiVersion": "v1", "Metadata": {...}}}` like `{"spec": ...}`:
`fold_keys` renames every key that matches a declared key of the model but for case to that declared
name, walking the body the way the model nests (into sub-models and lists of them, never into free-form
mappings such as `labels`, `annotations` or a resource's `config`, whose keys are the user's data). Keys
that match nothing are left as they are, so validation still refuses them with its "did you mean" hint;
two keys of one mapping that fold to the same name are a `KeyCaseError` naming both.

Spec files never come through here: their keys stay exact. Pure: no I/O.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from roomoperator.spec.validation import field_aliases, format_path, unwrap


class KeyCaseError(ValueError):
    """Two keys of one mapping fold to the same declared name; `path` names the mapping."""

    def __init__(self, path: str, first: str, second: str, name: str) -> None:
        where = f"{path}: " if path else ""
        super().__init__(f"{where}keys {first!r} and {second!r} both mean {name!r}: send one of them")
        self.path, self.first, self.second, self.name = path, first, second, name


def fold_keys(data: Any, model: type[BaseModel]) -> Any:
    """`data` with each key matching a declared key of `model` but for case renamed to it (and so on
    down); anything that is not a mapping or list is returned as it is."""
    return _fold(data, model, ())


def _fold(data: Any, annotation: Any, path: tuple[str | int, ...]) -> Any:
    target = unwrap(annotation)
    if isinstance(data, list):
        return [_fold(item, target, (*path, index)) for index, item in enumerate(data)]
    if not (isinstance(data, dict) and isinstance(target, type) and issubclass(target, BaseModel)):
        return data  # a scalar, or a free-form mapping: its keys are the user's
    fields = dict(field_aliases(target))
    known = {name.casefold(): name for name in fields}
    folded: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in data.items():
        key = str(key)  # JSON keys are strings
        name = key if key in fields else known.get(key.casefold(), key)
        if name in written:
            raise KeyCaseError(format_path(path), written[name], key, name)
        written[name] = key
        info = fields.get(name)
        folded[name] = _fold(value, info.annotation, (*path, name)) if info is not None else value
    return folded
