"""The layering contract of docs/architecture.md is enforced: `lint-imports` passes on the tree, and fails
on a copy of it in which a lower layer imports a higher one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(src: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_tree_keeps_its_layers(tmp_path: Path) -> None:
    result = _lint(ROOT / "src", tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_lower_layer_importing_a_higher_one_fails(tmp_path: Path) -> None:
    src = tmp_path / "src"
    shutil.copytree(ROOT / "src", src, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    planner = src / "roomoperator" / "planning" / "planner.py"
    planner.write_text(planner.read_text() + "\nfrom roomoperator.engine import reconciler  # noqa\n")
    result = _lint(src, tmp_path)
    assert result.returncode != 0
    assert "roomoperator.planning.planner -> roomoperator.engine.reconciler" in result.stdout
