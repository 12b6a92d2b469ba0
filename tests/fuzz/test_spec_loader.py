"""Fuzzing the spec loader (issue 13): arbitrary YAML and JSON text, and structured specs one mutation away
from valid. Whatever comes in, the loader gives specs or one `SpecError`, never another exception, and
every issue says where: text issues carry a line and column (or, for a problem of the whole document, a
message saying what the document lacks), data issues a field path (or the document's own problem)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomoperator.spec import SpecError, SpecIssue, load_data, load_text
from tests.fuzz.conftest import RUNS, examples
from tests.spec.documents import EXAMPLES
from tests.spec.test_properties import YAML_BITS, json_values

REFERENCE = (EXAMPLES / "ai-lab.room.yaml").read_text()
WHOLE_DOCUMENT = ("holds no RoomSpec document", "document is larger than")
"""Problems of the whole text, which have no one place in it."""

VALID: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "RoomSpec",
    "metadata": {"name": "fuzz", "version": 3, "labels": {"team": "a"}},
    "spec": {
        "roomId": "room-fuzz-1",
        "membership": "closed",
        "entities": [
            {"id": "E-agent-a", "kind": "agent", "capabilities": ["read"], "displayName": "A"},
            {"id": "E-human-b", "kind": "human"},
        ],
        "artifacts": [
            {"name": "plan", "type": "document", "workspace": "shared", "seedFrom": "seeds/project-plan.md"}
        ],
        "policies": {"dmVisibilityDefault": "team"},
        "resources": [{"name": "res-1", "type": "mcp", "config": {"url": "ws://127.0.0.1:9"}}],
    },
}

odd_values = st.one_of(
    json_values,
    st.sampled_from(["", "²", "9" * 5000, "../../etc/passwd", "x" * 300, "\x00", "\udc00"[:0] + "\u202e"]),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.recursive(st.none(), lambda inner: st.lists(inner, max_size=2), max_leaves=60),
)


def paths(document: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a value inside `document`."""
    found = [prefix]
    if isinstance(document, dict):
        for key, value in document.items():
            found += paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            found += paths(value, (*prefix, index))
    return found


ALL_PATHS = paths(VALID)[1:]


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """The valid spec with up to three mutations: a value replaced, a key dropped, renamed or added."""
    document = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent: Any = document
        try:
            for step in path[:-1]:
                parent = parent[step]
            action = draw(st.sampled_from(["replace", "drop", "rename", "add"]))
            last = path[-1]
            if action == "replace":
                parent[last] = draw(odd_values)
            elif action == "drop" and isinstance(parent, dict):
                parent.pop(last, None)
            elif action == "rename" and isinstance(parent, dict) and last in parent:
                parent[draw(st.text(max_size=12))] = parent.pop(last)
            elif isinstance(parent, dict):
                parent[draw(st.text(max_size=12))] = draw(odd_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation removed the way there
    return document


def yaml_text(document: Any) -> st.SearchStrategy[str]:
    """`document` as JSON text (a YAML subset), or in YAML block style as the loader writes specs."""
    return st.sampled_from([json.dumps(document), json.dumps(document, indent=2)])


def outcome_of_text(text: str) -> list[SpecIssue]:
    """The issues of `text` (none when it loads); any exception but SpecError fails the test."""
    try:
        load_text(text, base_dir=EXAMPLES)
    except SpecError as error:
        return error.issues
    return []


def placed_in_text(issue: SpecIssue) -> bool:
    return (issue.line is not None and issue.col is not None) or issue.message.startswith(WHOLE_DOCUMENT)


def edited(text: str, edits: list[tuple[int, int, str]]) -> str:
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    return text


text_inputs = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(YAML_BITS, st.text(max_size=6)), max_size=60).map("".join),
    st.lists(
        st.tuples(
            st.integers(0, len(REFERENCE)), st.integers(0, 12), st.one_of(YAML_BITS, st.text(max_size=4))
        ),
        min_size=1,
        max_size=6,
    ).map(lambda cuts: edited(REFERENCE, cuts)),
    near_valid().flatmap(yaml_text),
)


@pytest.mark.parametrize("count", RUNS)
def test_any_text_gives_specs_or_a_spec_error_placed_in_the_text(count: int) -> None:
    refused, unplaced = 0, []

    @examples(count * 5)  # the loader is in-process and fast
    @given(text_inputs)
    def check(text: str) -> None:
        nonlocal refused
        issues = outcome_of_text(text)
        refused += bool(issues)
        unplaced.extend((text[:80], str(issue)) for issue in issues if not placed_in_text(issue))

    check()
    print(f"\nfuzz spec text: {count * 5} texts, {refused} refused with a SpecError")
    assert unplaced == [], unplaced[:10]


@pytest.mark.parametrize(
    ("text", "line", "col"),
    [("\x01", 1, 1), ("metadata:\n  name: a\x07b\n", 2, 10), ("a: 1\r\n\r\u2028b: \x7f", 4, 4)],
)
def test_a_control_character_is_placed_by_line_and_column(text: str, line: int, col: int) -> None:
    (issue,) = outcome_of_text(text)
    assert (issue.line, issue.col) == (line, col)
    assert "unacceptable character" in issue.message


@pytest.mark.parametrize("name", [[], {"a": 1}])
def test_an_artifact_name_that_is_a_list_is_a_spec_error(name: Any) -> None:
    document = copy.deepcopy(VALID)
    document["spec"]["artifacts"][0]["name"] = name
    with pytest.raises(SpecError) as refused:
        load_data(document, base_dir=EXAMPLES)
    assert "spec.artifacts[0].name" in {issue.path for issue in refused.value.issues}
    with pytest.raises(SpecError):
        load_text(json.dumps(document), base_dir=EXAMPLES)


@pytest.mark.parametrize("count", RUNS)
def test_near_valid_documents_give_a_spec_or_a_spec_error_naming_fields(count: int) -> None:
    refused, unplaced = 0, []

    @examples(count * 5)  # the loader is in-process and fast
    @given(st.one_of(near_valid(), json_values))
    def check(document: Any) -> None:
        nonlocal refused
        try:
            load_data(document, base_dir=EXAMPLES)
        except SpecError as error:
            refused += 1
            unplaced.extend(
                str(issue) for issue in error.issues if not issue.path and isinstance(document, dict)
            )

    check()
    print(f"\nfuzz spec data: {count * 5} documents, {refused} refused with a SpecError")
    assert unplaced == [], unplaced[:10]
