"""The markdown every section of the report is written in: one table helper, one cell format.

Every table in ``report.md`` and ``privacy.md`` goes through ``markdown_table``, so the same
rows always give the same bytes, and a value that is not available is the same ``-``
everywhere.
"""

from __future__ import annotations

MISSING = "-"


def markdown_table(header: list[str], body: list[list[str]]) -> str:
    """A GitHub table, every line (the last included) ending in a newline."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines) + "\n"


def cell(value, digits: int = 3) -> str:
    """``-`` for a missing value, yes/no for a flag, ``digits`` decimals for a float."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)
