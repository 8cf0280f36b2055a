"""The documentation: docs/ built by mkdocs in strict mode (every page in the nav, every internal
link and anchor resolving), the README's links landing on files that exist, and every shell
and Python block of both either run by a named test or marked illustrative (tests/doc_blocks.py)."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys

from doc_blocks import CHECKED, REPO, every_block

README_LINK = re.compile(r"\]\(([^)#\s]+)(#[^)\s]*)?\)")


def build(source, site) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_docs_build_strict(tmp_path):
    done = build(REPO, tmp_path / "site")
    assert done.returncode == 0, done.stderr[-3000:]
    for page in (REPO / "docs").glob("*.md"):  # every page became a page of the site
        name = "index.html" if page.stem == "index" else f"{page.stem}/index.html"
        assert (tmp_path / "site" / name).is_file(), page.name


def test_a_broken_link_fails_the_strict_build(tmp_path):
    shutil.copy(REPO / "mkdocs.yml", tmp_path)
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    with open(tmp_path / "docs" / "sweep.md", "a") as page:
        page.write("\nSee [the old page](retired-page.md).\n")
    done = build(tmp_path, tmp_path / "site")
    assert done.returncode != 0
    assert "retired-page.md" in done.stderr


def test_the_readmes_links_land_on_files():
    text = (REPO / "README.md").read_text()
    targets = [m.group(1) for m in README_LINK.finditer(text) if "://" not in m.group(1)]
    assert targets, "the README links to its docs"
    missing = [t for t in targets if not (REPO / t).exists()]
    assert not missing, f"README links to files that do not exist: {missing}"


def test_every_shell_and_python_block_is_run_or_marked_illustrative():
    unmarked = [b.where() for b in every_block() if b.language in CHECKED and b.mark is None]
    assert not unmarked, (
        "mark each block on the line above its fence: <!-- run by tests/FILE.py::TEST --> "
        f"(and run it there) or <!-- illustrative: why -->; unmarked: {unmarked}"
    )


def test_every_block_marked_as_run_names_what_runs_it():
    marked = [b for b in every_block() if b.runner]
    assert marked
    ci_commands = (REPO / ".ci" / "run").read_text().strip().splitlines()
    for block in marked:
        runner = block.runner
        if runner == ".ci/run":  # CI's last line is the README's test command, verbatim
            assert block.text.strip() == ci_commands[-1], block.where()
            continue
        path, _, name = runner.partition("::")
        tree = ast.parse((REPO / path).read_text())
        defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in defined, f"{block.where()}: {runner} does not exist"
