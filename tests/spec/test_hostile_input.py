"""Hostile YAML: foreign tags, alias bombs, deep nesting, huge input, and other malformed text."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomoperator.spec import SpecError, load_file, load_text
from roomoperator.spec.parsing import MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_NODES, parse_documents
from roomoperator.spec.validation import MAX_ISSUES
from tests.spec.documents import issues_of_text

VALID = "metadata: {name: lab, version: 1}\nspec:\n  roomId: room-test-1\n"


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels + 1):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    return "\n".join(lines) + "\n"


@pytest.mark.timeout(10)
def test_alias_bomb_is_refused_before_expansion() -> None:
    [message] = issues_of_text(billion_laughs(), source="bomb.yaml")
    assert message.startswith("bomb.yaml:7:")
    assert f"document expands to more than {MAX_NODES} values (an alias expansion bomb?)" in message


def test_modest_aliases_are_fine() -> None:
    documents = parse_documents("base: &b {x: 1}\ncopies: [*b, *b, *b]\n")
    assert documents[0].data["copies"] == [{"x": 1}] * 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "a: !!python/object/apply:os.system [ls]\n",
            "1:4: tag !!python/object/apply:os.system is not allowed",
        ),
        ("a: !custom {x: 1}\n", "1:4: tag '!custom' is not allowed"),
        ("a: !!binary aGVsbG8=\n", "1:4: tag !!binary is not allowed"),
        ("a: !!set {x}\n", "1:4: tag !!set is not allowed"),
    ],
)
def test_foreign_tags_are_refused(text: str, expected: str) -> None:
    [message] = issues_of_text(text, source="t.yaml")
    assert message.startswith(f"t.yaml:{expected}")


def test_core_tags_are_accepted() -> None:
    [document] = parse_documents(
        "a: !!str 5\nb: !!int '7'\nc: !!float 1\nd: !!bool true\ne: !!null ''\nf: ! x\n"
    )
    assert document.data == {"a": "5", "b": 7, "c": 1.0, "d": True, "e": None, "f": "x"}


def test_yaml_1_2_scalars() -> None:
    [document] = parse_documents("a: yes\nb: 012\nc: 0x1F\nd: 1_000\ne: 2024-01-01\nf: .inf\ng: ~\nh: True\n")
    assert document.data == {
        "a": "yes",
        "b": 12,
        "c": 31,
        "d": 1000,
        "e": "2024-01-01",
        "f": float("inf"),
        "g": None,
        "h": True,
    }


def test_deep_nesting_is_refused() -> None:
    text = "a: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5) + "\n"
    [message] = issues_of_text(text, source="deep.yaml")
    assert message == f"deep.yaml:1:{MAX_DEPTH + 3}: document is nested deeper than {MAX_DEPTH} levels"


def test_very_deep_nesting_does_not_overflow_the_stack() -> None:
    text = "[" * 200_000 + "]" * 200_000
    [message] = issues_of_text(text)
    assert "nested deeper" in message


def test_oversized_text_is_refused() -> None:
    text = VALID + "# " + "x" * MAX_DOCUMENT_BYTES + "\n"
    assert issues_of_text(text, source="big.yaml") == [
        f"big.yaml: document is larger than {MAX_DOCUMENT_BYTES} bytes"
    ]


def test_oversized_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (MAX_DOCUMENT_BYTES * 3))
    with pytest.raises(SpecError) as caught:
        load_file(path)
    assert caught.value.issues[0].message == f"document is larger than {MAX_DOCUMENT_BYTES} bytes"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: 1\na: 2\n", "x.yaml:2:1: duplicate key 'a' (first at line 1)"),
        ("1: x\n", "x.yaml:1:1: mapping keys must be strings (got 1; quote it)"),
        ("? [a]\n: b\n", "x.yaml:1:3: mapping keys must be strings, not mappings or lists"),
        ("a: &x [*x]\n", "x.yaml:1:8: recursive alias *x is not supported"),
        ("a: *nowhere\n", "x.yaml:1:4: undefined alias *nowhere"),
        (
            "a: [1, 2\n",
            "x.yaml:2:1: while parsing a flow sequence expected ',' or ']', but got '<stream end>'",
        ),
        ("a: 1\n b: 2\n", "x.yaml:2:3: mapping values are not allowed here"),
        ("<<: 1\n", "x.yaml:1:5: a merge key '<<' needs a mapping or a list of mappings"),
        ('a: "\\ud800"\n', "x.yaml:1:4: text holds an invalid character (a lone surrogate escape)"),
        ("", "x.yaml: holds no RoomSpec document"),
        ("# only a comment\n---\n", "x.yaml: holds no RoomSpec document"),
        ("just text\n", "x.yaml:1:1: a RoomSpec document must be a mapping"),
    ],
)
def test_malformed_text_gets_one_clear_error(text: str, expected: str) -> None:
    [message] = issues_of_text(text, source="x.yaml")
    assert message.startswith(expected)


def test_huge_integers_are_errors_not_crashes() -> None:
    [message] = issues_of_text("metadata: {name: x, version: " + "9" * 5000 + "}\n")
    assert "is not a valid int" in message


def test_merge_keys_merge_and_explicit_keys_win() -> None:
    [document] = parse_documents("base: &b {x: 1, y: 2}\nitem:\n  y: 3\n  <<: *b\n")
    assert document.data["item"] == {"y": 3, "x": 1}


def test_invalid_utf8_file_is_reported_with_its_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(b"metadata:\n  name: \xff\n")
    with pytest.raises(SpecError) as caught:
        load_file(path)
    [issue] = caught.value.issues
    assert (issue.message, issue.line, issue.col) == ("is not UTF-8 text", 2, 9)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_file(tmp_path / "absent.yaml")
    assert caught.value.issues[0].message == "cannot read the file: No such file or directory"


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_file(path)[0].spec.room_id == "room-test-1"


def test_valid_text_loads() -> None:
    assert load_text(VALID)[0].spec.metadata.name == "lab"


def test_a_directory_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_file(tmp_path)
    assert caught.value.issues[0].message == "cannot read the file: Is a directory"


def test_errors_are_capped_per_document() -> None:
    entities = ", ".join(["*e"] * 5000)
    text = f"{VALID}  entities: [&e {{id: E-aa, kind: agent}}, {entities}]\n"
    messages = issues_of_text(text, source="many.yaml")
    assert len(messages) == MAX_ISSUES + 1
    assert messages[-1] == f"many.yaml:1:1: {5000 - MAX_ISSUES} more errors not shown"
