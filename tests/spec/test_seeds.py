"""seedFrom confinement: relative paths inside the spec's folder only, symlinks followed."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomoperator.spec import SeedPathError, SpecError, load_file, resolve_seed_path
from tests.spec.documents import issues_of_data, minimal


@pytest.fixture
def spec_dir(tmp_path: Path) -> Path:
    (tmp_path / "room" / "seeds").mkdir(parents=True)
    (tmp_path / "room" / "seeds" / "plan.md").write_text("plan\n")
    (tmp_path / "secret.txt").write_text("secret\n")
    return tmp_path / "room"


@pytest.mark.parametrize(
    "seed", ["seeds/plan.md", "./seeds/plan.md", "seeds/../seeds/plan.md", "seeds//plan.md"]
)
def test_relative_paths_resolve_inside_the_folder(spec_dir: Path, seed: str) -> None:
    assert resolve_seed_path(spec_dir, seed) == (spec_dir / "seeds" / "plan.md").resolve()


def test_a_missing_file_still_resolves(spec_dir: Path) -> None:
    # Existence is the engine's PRE_CHECKS business, not validation's.
    assert resolve_seed_path(spec_dir, "seeds/later.md") == (spec_dir / "seeds" / "later.md").resolve()


@pytest.mark.parametrize(
    ("seed", "reason"),
    [
        ("/etc/passwd", "must be relative to the spec's folder (got the absolute path '/etc/passwd')"),
        ("C:/Windows/win.ini", "must be relative to the spec's folder"),
        ("../secret.txt", "must stay inside the spec's folder ('../secret.txt' escapes it with '..')"),
        ("seeds/../../secret.txt", "escapes it with '..'"),
        ("seeds\\plan.md", "must use '/' as the path separator"),
        ("", "must be a relative file path (got an empty string)"),
        (".", "must name a file inside the spec's folder"),
        ("seeds/..", "must name a file inside the spec's folder"),
    ],
)
def test_paths_leaving_the_folder_are_refused(spec_dir: Path, seed: str, reason: str) -> None:
    with pytest.raises(
        SeedPathError, match=reason.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        resolve_seed_path(spec_dir, seed)


def test_a_symlink_out_of_the_folder_is_refused(spec_dir: Path) -> None:
    (spec_dir / "seeds" / "leak.md").symlink_to(spec_dir.parent / "secret.txt")
    with pytest.raises(SeedPathError, match="leads out of it through a symlink"):
        resolve_seed_path(spec_dir, "seeds/leak.md")


def test_a_symlink_inside_the_folder_is_followed(spec_dir: Path) -> None:
    (spec_dir / "current.md").symlink_to(spec_dir / "seeds" / "plan.md")
    assert resolve_seed_path(spec_dir, "current.md") == (spec_dir / "seeds" / "plan.md").resolve()


def test_validation_reports_a_symlink_escape_with_its_position(spec_dir: Path) -> None:
    (spec_dir / "seeds" / "leak.md").symlink_to(spec_dir.parent / "secret.txt")
    spec_file = spec_dir / "room.yaml"
    spec_file.write_text(
        "metadata: {name: x, version: 1}\n"
        "spec:\n"
        "  roomId: room-test-1\n"
        "  artifacts:\n"
        "    - {name: leak, type: document, workspace: shared, seedFrom: seeds/leak.md}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_file(spec_file)
    assert str(caught.value) == (
        f"{spec_file}:5:65: spec.artifacts[0].seedFrom: must stay inside the spec's folder"
        " ('seeds/leak.md' leads out of it through a symlink)"
    )


def test_seed_paths_are_checked_lexically_without_a_folder() -> None:
    data = minimal(artifacts=[{"name": "a", "type": "t", "workspace": "w", "seedFrom": "../x"}])
    assert issues_of_data(data) == [
        "<request>: spec.artifacts[0].seedFrom:"
        " must stay inside the spec's folder ('../x' escapes it with '..')"
    ]


def test_seeds_resolve_against_the_spec_file_not_the_working_directory(spec_dir: Path) -> None:
    spec_file = spec_dir / "room.yaml"
    spec_file.write_text("metadata: {name: x, version: 1}\nspec: {roomId: room-test-1}\n")
    [loaded] = load_file(spec_file)
    assert loaded.base_dir == spec_dir.resolve()


def test_a_missing_seed_file_is_a_warning_not_an_error(spec_dir: Path) -> None:
    spec_file = spec_dir / "room.yaml"
    spec_file.write_text(
        "metadata: {name: x, version: 1}\n"
        "spec:\n"
        "  roomId: room-test-1\n"
        "  policies: {dmVisibilityDefault: team}\n"
        "  artifacts:\n"
        "    - {name: plan, type: document, workspace: shared, seedFrom: seeds/plan.md}\n"
        "    - {name: later, type: document, workspace: shared, seedFrom: seeds/later.md}\n"
    )
    [loaded] = load_file(spec_file)
    assert [str(warning) for warning in loaded.warnings] == [
        f"{spec_file}:7:66: spec.artifacts[1].seedFrom: file 'seeds/later.md' not found (yet):"
        " applying will fail its pre-checks"
    ]
