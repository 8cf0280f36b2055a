"""The shell and Python blocks of the README and docs/, each marked on the line above its fence
as run by a named test (``<!-- run by tests/FILE.py::TEST -->``) or as illustrative
(``<!-- illustrative -->``: a cluster, hours of compute, a placeholder to fill in). The tests
that run blocks take them from here by their own name, so a block moves between pages freely
and a block nobody runs is found (tests/test_docs.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHECKED = {"bash", "sh", "shell", "console", "python", "py", "pycon"}  # shell and Python
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.M | re.S)
MARK = re.compile(r"<!-- (illustrative(?:: [^>]*)?|run by \S+) -->")


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int  # of the opening fence, 1-based
    language: str
    mark: str | None  # "illustrative[: why]", "run by tests/x.py::test_y" or ".ci/run", or None
    text: str

    @property
    def runner(self) -> str | None:
        """What runs it (``tests/x.py::test_y``, or ``.ci/run``), if it is marked so."""
        return self.mark[len("run by ") :] if self.mark and self.mark.startswith("run by") else None

    def where(self) -> str:
        return f"{self.page}:{self.line}"


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    text = page.read_text()
    found = []
    for fence in FENCE.finditer(text):
        line = text.count("\n", 0, fence.start()) + 1
        above = text[: fence.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        mark = MARK.fullmatch(above)
        body = "\n".join(s[len(fence.group(1)) :] for s in fence.group(3).split("\n"))
        found.append(
            Block(
                str(page.relative_to(REPO)),
                line,
                fence.group(2),
                mark.group(1) if mark else None,
                body,
            )
        )
    return found


def every_block() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def run_by(test: str) -> list[Block]:
    """The blocks marked as run by ``test`` (``tests/FILE.py::NAME``), in page order."""
    return [block for block in every_block() if block.runner == test]
