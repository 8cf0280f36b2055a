"""Lint, import order and format are kept by ruff (configured in pyproject.toml) on the whole
tree: a change that breaks them fails here, with ruff's own report of where."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
RUFF = shutil.which("ruff", path=str(Path(sys.executable).parent)) or "ruff"


def ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RUFF, *args, "--no-cache", "."], cwd=REPO_ROOT, capture_output=True, text=True
    )


def test_ruff_finds_no_lint_or_import_order_problem():
    result = ruff("check", "--output-format", "concise")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is():
    result = ruff("format", "--check")
    assert result.returncode == 0, result.stdout + result.stderr
