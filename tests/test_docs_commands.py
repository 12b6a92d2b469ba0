"""Every `roomop` / `roomserver` command line shown in the README and in docs/ names a real command and
only options that command has (checked against its `--help`), so a newcomer copying one never meets an
unknown flag."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_LINE = re.compile(r"^\s*(?:\$\s+)?((?:\.venv/bin/)?(?:roomop|roomserver)\s.*)$")
OPTION = re.compile(r"^(--[a-z][a-z0-9-]*|-[a-zA-Z])(?:=.*)?$")


def _command_lines() -> list[tuple[str, int, str]]:
    """(document, line number, command) for each command line inside a fenced code block."""
    found = []
    for document in DOCUMENTS:
        fenced = False
        for number, line in enumerate(document.read_text().splitlines(), start=1):
            if line.lstrip().startswith("```"):
                fenced = not fenced
                continue
            match = COMMAND_LINE.match(line) if fenced else None
            if match is not None:
                command = match.group(1).split(" #", 1)[0].rstrip(" \\")
                found.append((document.name, number, command))
    return found


@cache
def _help(program: str, command: str) -> str:
    executable = Path(sys.executable).with_name(program)
    answer = subprocess.run(
        [str(executable), command, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert answer.returncode == 0, f"`{program} {command} --help` failed: {answer.stderr}"
    return answer.stdout


def _parts(command: str) -> tuple[str, str, list[str]]:
    words = shlex.split(command.replace("[", " ").replace("]", " ").replace("...", " "))
    program = Path(words[0]).name
    options = [m.group(1) for w in words[2:] if (m := OPTION.match(w))]
    return program, words[1], options


LINES = _command_lines()


def test_the_documents_show_commands() -> None:
    assert len(LINES) >= 10


@pytest.mark.parametrize(("document", "number", "command"), LINES, ids=[f"{d}:{n}" for d, n, _ in LINES])
def test_a_documented_command_line_exists_with_its_options(document: str, number: int, command: str) -> None:
    program, subcommand, options = _parts(command)
    shown = _help(program, subcommand)
    missing = [o for o in options if not re.search(rf"(?<![\w-]){re.escape(o)}(?![\w-])", shown)]
    assert not missing, f"{document}:{number}: `{command}`: {program} {subcommand} has no {missing}"
