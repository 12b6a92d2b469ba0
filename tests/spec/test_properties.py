"""Property tests: any input gives a spec or a SpecError (never another exception); valid specs round-trip."""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomoperator.spec import LoadedSpec, SpecError, SpecIssue, dump_yaml, load_data, load_text, parsing
from roomoperator.spec.models import (
    CAPABILITY_PATTERN,
    RESERVED_ARTIFACT_NAMES,
    ROOM_ID_PATTERN,
    TAG_PATTERN,
    WORKSPACE_PATTERN,
    ArtifactSpec,
    EntityPolicy,
    EntitySpec,
    Metadata,
    Policies,
    ResourceSpec,
    RoomSpec,
    RoomSpecBody,
)
from roomoperator.spec.parsing import ParseError, parse_documents, parse_json
from roomoperator.spec.schema import json_schema
from tests.spec.documents import EXAMPLES, minimal

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ROUND_TRIP = settings(SETTINGS, max_examples=60)
SCHEMA = jsonschema.Draft202012Validator(json_schema())
ID_CHARS = string.ascii_letters + string.digits + "-_"

# Fragments that steer random text into the YAML parser's interesting corners.
YAML_BITS = st.sampled_from(
    [
        "metadata:",
        "spec:",
        "roomId:",
        "entities:",
        "- ",
        "  ",
        "\n",
        ": ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "&a ",
        "*a",
        "<<: ",
        "!!str ",
        "!x ",
        "---\n",
        "'",
        '"',
        "#",
        "? ",
        "|",
        ">",
        "\t",
        "E-agent",
        "kind: agent",
        "version: 1",
        "null",
        "~",
        "0x1",
        "1e9",
        "\\u0000",
        "%YAML 1.1\n",
        "...\n",
    ]
)
yaml_like_text = st.lists(st.one_of(YAML_BITS, st.text(max_size=5)), max_size=40).map("".join)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


def spec_or_issues(load: Callable[[], object]) -> object:
    """The spec(s), or the issues of the SpecError; any other exception fails the test."""
    try:
        return load()
    except SpecError as error:
        return error.issues


def is_specs_or_issues(outcome: object) -> bool:
    if isinstance(outcome, RoomSpec):
        return True
    return (
        isinstance(outcome, list)
        and bool(outcome)
        and all(isinstance(item, LoadedSpec | SpecIssue) for item in outcome)
    )


@SETTINGS
@given(st.text(max_size=300))
def test_arbitrary_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    assert text.strip() == "" or is_specs_or_issues(spec_or_issues(lambda: load_text(text)))


@SETTINGS
@given(yaml_like_text)
def test_yaml_like_text_gives_a_spec_or_a_spec_error(text: str) -> None:
    assert is_specs_or_issues(spec_or_issues(lambda: load_text(text)))


REFERENCE_TEXT = (EXAMPLES / "ai-lab.room.yaml").read_text()


@SETTINGS
@given(st.lists(st.tuples(st.integers(0, len(REFERENCE_TEXT)), st.integers(0, 8), YAML_BITS), max_size=4))
def test_an_edited_reference_spec_gives_a_spec_or_a_spec_error(edits: list[tuple[int, int, str]]) -> None:
    text = REFERENCE_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    assert is_specs_or_issues(spec_or_issues(lambda: load_text(text, base_dir=EXAMPLES)))


@SETTINGS
@given(json_values)
def test_arbitrary_json_bodies_give_a_spec_or_a_spec_error(data: Any) -> None:
    outcome = spec_or_issues(lambda: load_data(data))
    assert is_specs_or_issues(outcome)
    if isinstance(outcome, list):
        assert all(issue.line is None for issue in outcome)


@SETTINGS
@given(st.sampled_from(["metadata", "spec", "entities", "artifacts", "policies", "resources"]), json_values)
def test_a_valid_spec_with_one_field_replaced_gives_a_spec_or_a_spec_error(where: str, value: Any) -> None:
    data = minimal(entities=[{"id": "E-agent-1", "kind": "agent"}])
    if where in ("metadata", "spec"):
        data[where] = value
    else:
        data["spec"][where] = value
    assert is_specs_or_issues(spec_or_issues(lambda: load_data(data)))


def pattern(regex: str, *, max_length: int = 128) -> st.SearchStrategy[str]:
    """Strings of the pattern within the shared contract's field bounds (`roomcontract/limits.py`)."""
    return st.from_regex(regex, fullmatch=True).filter(lambda text: len(text) <= max_length)


texts = st.text(max_size=12)
config_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=6,
)


@st.composite
def entities(draw: st.DrawFn, ident: str) -> EntitySpec:
    visibility = draw(st.sampled_from(["public", "team", "owner"]))
    owner = draw(pattern(r"[a-z]{1,10}-[0-9]{1,4}") if visibility == "owner" else st.none() | texts)
    return EntitySpec(
        id=ident,
        kind=draw(st.sampled_from(["human", "agent", "npc", "orchestrator"])),
        display_name=draw(st.none() | texts),
        visibility=visibility,
        owner_user_id=owner,
        capabilities=tuple(draw(st.lists(pattern(CAPABILITY_PATTERN), max_size=3))),
        policy=EntityPolicy(
            allow_commands_from=draw(st.sampled_from(["any", "orchestrator", "owner"])),
            sandbox_mode=draw(st.booleans()),
            env_whitelist=tuple(draw(st.lists(texts, max_size=2))),
            scopes=tuple(draw(st.lists(texts, max_size=2))),
        ),
        protect=draw(st.booleans()),
    )


artifact_names = pattern(r"[A-Za-z0-9][A-Za-z0-9._-]{0,15}").filter(
    lambda name: ".." not in name and name not in RESERVED_ARTIFACT_NAMES and not name.endswith(".tmp")
)


@st.composite
def room_specs(draw: st.DrawFn) -> RoomSpec:
    ids = draw(
        st.lists(st.text(ID_CHARS, min_size=2, max_size=10).map("E-".__add__), max_size=4, unique=True)
    )
    names = draw(st.lists(artifact_names, max_size=4, unique=True))
    artifacts = [
        ArtifactSpec(
            name=name,
            type=draw(pattern(r"[a-z]{1,12}")),
            workspace=draw(pattern(WORKSPACE_PATTERN)),
            tags=tuple(draw(st.lists(pattern(TAG_PATTERN), max_size=3))),
            seed_from=draw(st.none() | pattern(r"[a-z]{1,8}(/[a-z0-9_-]{1,8}){0,2}\.(md|json)")),
            promote_after_seed=draw(st.booleans()),
            depends_on=tuple(draw(st.lists(st.sampled_from(names[:index]), unique=True)) if index else ()),
            protect=draw(st.booleans()),
        )
        for index, name in enumerate(names)
    ]
    resources = [
        ResourceSpec(
            name=name,
            type="mcp-tool",
            config={
                **draw(
                    st.dictionaries(texts.filter(lambda key: key not in ("endpoint", "url")), config_values)
                ),
                "endpoint": draw(
                    st.sampled_from(["http://127.0.0.1:9/mcp", "ws://mcp:8081", "https://x.example"])
                ),
            },
            depends_on=tuple(
                draw(st.lists(st.sampled_from(ids + names), unique=True)) if ids + names else ()
            ),
            on_missing_dependency=draw(st.sampled_from(["skip", "fail"])),
        )
        for name in draw(
            st.lists(pattern(r"[a-z]{1,10}(\.[a-z]{1,6})?(@[a-z]{1,6})?"), max_size=3, unique=True)
        )
    ]
    return RoomSpec(
        metadata=Metadata(
            name=draw(pattern(r"[a-z][a-z0-9-]{0,20}")),
            version=draw(st.integers(min_value=1, max_value=2**31 - 1)),
            labels=draw(st.dictionaries(texts, texts, max_size=3)),
            annotations=draw(st.dictionaries(texts, texts, max_size=2)),
        ),
        spec=RoomSpecBody(
            room_id=draw(pattern(ROOM_ID_PATTERN)),
            entities=tuple(draw(entities(ident)) for ident in ids),
            artifacts=tuple(artifacts),
            policies=Policies(
                dm_visibility_default=draw(st.sampled_from(["public", "team", "owner"])),
                allow_resource_creation=draw(st.booleans()),
                max_artifacts_per_entity=draw(st.integers(min_value=0, max_value=10**6)),
            ),
            resources=tuple(resources),
            rollback=draw(st.sampled_from(["never", "on-failure"])),
            membership=draw(st.sampled_from(["closed", "open"])),
        ),
    )


@ROUND_TRIP
@given(room_specs())
def test_valid_specs_round_trip_through_yaml(spec: RoomSpec) -> None:
    [loaded] = load_text(dump_yaml(spec))
    assert loaded.spec == spec


@ROUND_TRIP
@given(room_specs())
def test_valid_specs_round_trip_through_the_wire_form(spec: RoomSpec) -> None:
    assert load_data(spec.to_wire()) == spec
    [loaded] = load_text(json.dumps(spec.to_wire()))
    assert loaded.spec == spec


@ROUND_TRIP
@given(room_specs())
def test_valid_specs_are_valid_under_the_json_schema(spec: RoomSpec) -> None:
    assert list(SCHEMA.iter_errors(spec.to_wire())) == []


# JSON texts in the shapes that tell the stdlib and YAML parsers apart: escapes, spacing, line breaks.
json_spacing = st.sampled_from(["", " ", "\n", "\r\n", "\t", "\n  ", " " * 40, "\u2028"])
json_texts = st.tuples(
    st.dictionaries(st.text(max_size=80), json_values, max_size=4),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 2)),
    json_spacing,
    st.lists(st.tuples(st.integers(0, 200), json_spacing | YAML_BITS | st.text(max_size=3)), max_size=2),
).map(
    lambda drawn: _edit(
        json.dumps(drawn[0], ensure_ascii=drawn[1], indent=drawn[2]).replace(": ", drawn[3] + ": "),
        drawn[4],
    )
)


def _edit(text: str, edits: list[tuple[int, str]]) -> str:
    for at, insert in edits:
        text = text[:at] + insert + text[at:]
    return text


@SETTINGS
@given(json_texts)
def test_the_fast_json_reading_agrees_with_the_yaml_path(text: str) -> None:
    fast = parse_json(text)
    if fast is None:
        return
    [document] = parse_documents(text)
    assert repr(fast) == repr(document.data)  # repr: tells 0 from 0.0 and -0.0 from 0.0


def _parsed(text: str) -> object:
    """What `parse_documents` makes of `text`: every document with its positions, or the error."""
    try:
        return [(repr(doc.data), doc.index, doc.values, doc.keys) for doc in parse_documents(text)]
    except ParseError as error:
        return error.message, error.mark


edited_reference_text = st.lists(
    st.tuples(st.integers(0, len(REFERENCE_TEXT)), st.integers(0, 8), YAML_BITS), max_size=4
).map(lambda edits: _edit_reference(REFERENCE_TEXT, edits))


def _edit_reference(text: str, edits: list[tuple[int, int, str]]) -> str:
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut :]
    return text


@pytest.mark.skipif(parsing.CParser is None, reason="ruamel.yaml.clibz is not installed")
@SETTINGS
@given(yaml_like_text | st.text(max_size=300) | edited_reference_text | json_texts)
def test_libyaml_events_agree_with_ruamel_yaml(text: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parsing, "CParser", None)
        pure = _parsed(text)
    assert _parsed(text) == pure
