"""The dependency rule (docs/developing.md: Layout), checked by import-linter and grimp."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grimp

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_the_layers_contract_in_pyproject_is_kept():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or "lint-imports"
    result = subprocess.run([lint, "--no-cache"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def test_no_module_imports_one_that_imports_it_back():
    # Import-time cycles, lazy imports inside functions included (type-only imports excepted:
    # they never run). For every direct import a -> b, no chain of imports leads from b to a.
    graph = grimp.build_graph("lie_ray", exclude_type_checking_imports=True)
    cycles = sorted(
        {
            tuple(sorted((importer, imported)))
            for importer in graph.modules
            for imported in graph.find_modules_directly_imported_by(importer)
            if graph.find_shortest_chain(importer=imported, imported=importer)
        }
    )
    assert cycles == []
