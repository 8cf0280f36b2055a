"""``## Sanity checks``: Carlini et al.'s ("On Evaluating Adversarial Robustness", 2019) signs
that an evaluation, not the defence, is weak, computed per scenario from the results:

- error non-decreasing in epsilon (each worst case, allowing one image of noise);
- an unbounded attack (eps 1: any image is reachable) reaching >= 0.99 error;
- the white-box PGD with twice the steps and restarts changing its error by < 0.02;
- no black-box or transfer attack above the white-box ones (else gradient masking).

A failed check is named beside the headline figure it casts doubt on (``doubts``).
"""

from __future__ import annotations

from dataclasses import dataclass

from lie_ray.attacks.spec import WORST_CASE, WORST_CASE_KEYLESS
from lie_ray.report.catalogue import Catalogue
from lie_ray.report.markdown import markdown_table
from lie_ray.report.paper import Row, find, same_epsilon

UNBOUNDED_MIN = 0.99
DOUBLING_MAX = 0.02


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not measured (the rows are absent)
    detail: str

    def cell(self) -> str:
        verdict = {True: "pass", False: "**FAIL**", None: "not run"}[self.passed]
        return f"{verdict}: {self.detail}" if self.detail else verdict


def rising_with_epsilon(rows: list[Row], scenario: str) -> Check:
    details, passed = [], None
    for name in (WORST_CASE_KEYLESS, WORST_CASE):
        points = sorted(
            (r for r in rows if r.scenario == scenario and r.evaluation == name),
            key=lambda r: r.epsilon,
        )
        if len(points) < 2:
            continue
        slack = 1 / min(r.n for r in points)  # one image
        ok = all(b.error >= a.error - slack - 1e-12 for a, b in zip(points, points[1:]))
        passed = ok if passed is None else passed and ok
        details.append(f"{name} " + " → ".join(f"{r.error:.2f}" for r in points))
    return Check("error rises with eps", passed, "; ".join(details))


def unbounded(rows: list[Row], scenario: str, catalogue: Catalogue) -> Check:
    row = find(rows, scenario, catalogue.checked_by("unbounded"), 1.0)
    if row is None:
        return Check("unbounded attack", None, "")
    return Check(
        "unbounded attack",
        row.error >= UNBOUNDED_MIN,
        f"{row.error:.3f} at eps 1 (needs >= {UNBOUNDED_MIN})",
    )


def doubling(rows: list[Row], scenario: str, epsilon: float, catalogue: Catalogue) -> Check:
    once, twice = (
        find(rows, scenario, catalogue.checked_by(check), epsilon) for check in ("once", "doubled")
    )
    if once is None or twice is None:
        return Check("2x steps and restarts", None, "")
    change = twice.error - once.error
    return Check(
        "2x steps and restarts",
        abs(change) < DOUBLING_MAX,
        f"{once.error:.3f} → {twice.error:.3f} (change {change:+.3f}, needs < "
        f"{DOUBLING_MAX} either way)",
    )


def black_box_below_white_box(
    rows: list[Row], scenario: str, epsilon: float, catalogue: Catalogue
) -> Check:
    """No attack that follows none of the pipeline's gradient (``box`` "black") above those
    that follow the key holder's ("white"): else the gradient is masked."""
    black_box, white_box = catalogue.boxed("black"), catalogue.boxed("white")
    found = {
        r.evaluation: r for r in rows if r.scenario == scenario and same_epsilon(r.epsilon, epsilon)
    }
    whole = max((r.n for r in found.values()), default=0)
    # Over the whole test set only: the cascade runs black-box attacks on what is left.
    black = {n: found[n].error for n in black_box if n in found and found[n].n == whole}
    white = {n: found[n].error for n in white_box if n in found and found[n].n == whole}
    if not black or not white:
        partial = any(n in found for n in black_box)
        return Check(
            "black-box <= white-box",
            None,
            "black-box attacks ran on a cascade's subset" if partial else "",
        )
    top_black, top_white = max(black, key=black.get), max(white, key=white.get)
    return Check(
        "black-box <= white-box",
        black[top_black] <= white[top_white],
        f"{top_black} {black[top_black]:.3f} vs {top_white} {white[top_white]:.3f}"
        + ("" if black[top_black] <= white[top_white] else ": gradient masking?"),
    )


def checks(
    rows: list[Row], scenario: str, epsilon: float | None, catalogue: Catalogue
) -> list[Check]:
    found = [rising_with_epsilon(rows, scenario), unbounded(rows, scenario, catalogue)]
    if epsilon is not None:
        found += [
            doubling(rows, scenario, epsilon, catalogue),
            black_box_below_white_box(rows, scenario, epsilon, catalogue),
        ]
    return found


def doubts(
    rows: list[Row], scenarios: list[str], epsilon: float | None, catalogue: Catalogue
) -> dict[str, list[str]]:
    """The failed checks per scenario, for the headline."""
    return {
        s: [c.name for c in checks(rows, s, epsilon, catalogue) if c.passed is False]
        for s in scenarios
    }


def section(
    rows: list[Row], scenarios: list[str], epsilon: float | None, catalogue: Catalogue
) -> str:
    table = {s: checks(rows, s, epsilon, catalogue) for s in scenarios}
    if not any(c.passed is not None for found in table.values() for c in found):
        return ""
    names = [c.name for c in next(iter(table.values()))]
    body = [[s, *(c.cell() for c in found)] for s, found in table.items()]
    return (
        "\n## Sanity checks\n\n"
        "Carlini et al. (2019): signs that the evaluation, not the defence, is weak. The "
        "white-box PGD (the key and the transform's own backward) runs unbounded (eps 1) "
        "and, at the headline epsilon, once as set and once with twice the steps and "
        "restarts; black-box attacks (" + ", ".join(catalogue.boxed("black")) + ") above the "
        "white-box ones suggest gradient masking. Keyless attacks are "
        + ", ".join(catalogue.united(WORST_CASE_KEYLESS))
        + ". A "
        "failure is named beside the scenario's headline figure.\n\n"
        + markdown_table(["Scenario", *names], body)
    )
