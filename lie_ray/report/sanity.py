"""``## Sanity checks``: signs that an evaluation, not the defence, is weak (Carlini et al., "On
Evaluating Adversarial Robustness", 2019; Croce & Hein, ICML 2020), per scenario, from the
results and the per-image rows (``examples.parquet``). Each compares what can differ, so each
can fail:

- **error rises with eps**: per attack (not per worst case: a union carried up the eps ladder
  cannot fall), the images it broke at the larger eps against the smaller, on the images it
  met at both; it fails on a fall of more than one image that chance does not explain (a
  sign test on the images only one eps broke, p < 0.05). In cascade mode an image an attack
  broke at the smaller eps is never met again, so there the check bites on the attacks that
  met every image (the paper's readings); in full mode on every attack.
- **unbounded attack**: the white-box PGD at eps 1 (any image is reachable) reaches >= 0.99.
- **2x effort**: the white-box PGD with twice the steps and restarts, and each keyless attack
  that carries a key-based defence's headline with twice its effort (EOT's keys, the bypass's
  fit, Square's queries) on the images it met; it fails on a change of 0.02 of the test
  images or more, either way, that chance does not explain (p < 0.05).
- **black-box <= white-box**: per black-box attack (queries, or another model's gradient), on
  the images it met, no more broken than by the strongest white-box attack (the key holder's
  gradient) that met every one of them, beyond chance (a sign test on the images only one of
  them broke, p < 0.05); else the gradient is masked.
- **Square after gradient attacks**: AutoAttack's own flag (``check_square_sr`` in the
  reference code): Square, run last, breaking more than 0.2% of the images its gradient
  attacks left suggests masked gradients.

A failed check is named beside the headline figure it casts doubt on (``doubts``): the worst
case of the attacker whose attack it questions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from lie_ray.attacks.library import SQUARE
from lie_ray.attacks.spec import WORST_CASE, WORST_CASES
from lie_ray.infra import tables
from lie_ray.report.catalogue import Catalogue
from lie_ray.report.markdown import markdown_table
from lie_ray.report.paper import Row, find, same_epsilon

UNBOUNDED_MIN = 0.99
DOUBLING_MAX = 0.02  # of the test images, either way
SQUARE_MAX = 0.002  # AutoAttack's alpha: Square may break at most this share of the images
NOISE = 1  # images an attack's error may fall from one eps to the next
SIGNIFICANCE = 0.05  # a change fails a check only where chance explains it this rarely


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool | None  # None: not measured (the rows are absent)
    detail: str
    doubts: tuple[str, ...] = field(default=())  # the worst cases a failure casts doubt on

    def cell(self) -> str:
        verdict = {True: "pass", False: "**FAIL**", None: "not run"}[self.passed]
        return f"{verdict}: {self.detail}" if self.detail else verdict


class PerImage:
    """Per (scenario, evaluation, epsilon): the ids an evaluation attacked, whether each was
    misclassified, and what broke it (a composite attack's part), from ``examples.parquet``."""

    def __init__(self, table: pa.Table | None):
        self.rows: dict[tuple[str, str], list[tuple[float, dict]]] = {}
        if table is None:
            return
        columns = ["scenario", "evaluation", "epsilon", "id", "correct", "attacked"]
        has_parts = "broken_by" in table.column_names
        table = table.select(columns + (["broken_by"] if has_parts else []))
        frame = {name: table.column(name).to_numpy(zero_copy_only=False) for name in columns}
        parts = table.column("broken_by").to_numpy(zero_copy_only=False) if has_parts else None
        keys = np.char.add(
            np.char.add(frame["scenario"].astype(str), "\x1f"), frame["evaluation"].astype(str)
        )
        for key in np.unique(keys):
            mine = (keys == key) & frame["attacked"]
            scenario, evaluation = str(key).split("\x1f")
            for eps in np.unique(frame["epsilon"][mine]):
                at = mine & (frame["epsilon"] == eps)
                order = np.argsort(frame["id"][at])
                self.rows.setdefault((scenario, evaluation), []).append(
                    (
                        float(eps),
                        {
                            "ids": frame["id"][at][order],
                            "wrong": ~frame["correct"][at][order].astype(bool),
                            "parts": None if parts is None else parts[at][order].astype(str),
                        },
                    )
                )

    @classmethod
    def of_results(cls, directory: str | Path) -> PerImage:
        path = Path(directory) / tables.EXAMPLES
        return cls(tables.read_examples(directory) if path.is_file() else None)

    @property
    def present(self) -> bool:
        return bool(self.rows)

    def ladder(self, scenario: str, evaluation: str) -> list[tuple[float, dict]]:
        """The attacked epsilons (> 0) of one evaluation, ascending."""
        found = self.rows.get((scenario, evaluation), [])
        return sorted((e, r) for e, r in found if e > 0)

    def at(self, scenario: str, evaluation: str, epsilon: float) -> dict | None:
        return next(
            (r for e, r in self.rows.get((scenario, evaluation), []) if same_epsilon(e, epsilon)),
            None,
        )


def wrong_on(found: dict, ids: np.ndarray) -> np.ndarray:
    """Whether ``found``'s evaluation broke each of ``ids`` (all of which it met)."""
    return found["wrong"][np.searchsorted(found["ids"], ids)]


@dataclass(frozen=True)
class Paired:
    """Two evaluations on the same images: how many each broke, and how many only the first
    (``lost`` going from it to the second) or only the second (``gained``) broke."""

    before: int
    after: int
    lost: int
    gained: int

    @classmethod
    def of(cls, first: dict, second: dict, ids: np.ndarray) -> Paired:
        was, now = wrong_on(first, ids), wrong_on(second, ids)
        return cls(int(was.sum()), int(now.sum()), int((was & ~now).sum()), int((now & ~was).sum()))


def sign_test(lost: int, gained: int) -> float:
    """One-sided p-value of losing ``lost`` images and gaining ``gained`` (the images only one
    side broke) if either side were as likely to break each: the chance of ``lost`` or more
    of the ``lost + gained`` going one way. Two runs of a randomised attack differ on some
    images by chance alone; a check fails only on a change chance does not explain."""
    n = lost + gained
    return sum(math.comb(n, k) for k in range(lost, n + 1)) / 2**n if n else 1.0


def attackers_worst_case(name: str, catalogue: Catalogue) -> str:
    """The narrowest worst case that takes ``name``'s attacker: the figure its doubt is on."""
    tier = catalogue.shown[name].tier if name in catalogue.shown else "with-key"
    return next((w.name for w in WORST_CASES if tier in w.tiers), WORST_CASE)


def rising_with_epsilon(images: PerImage, scenario: str, catalogue: Catalogue) -> Check:
    name = "error rises with eps"
    if not images.present:
        return Check(name, None, "no examples.parquet")
    compared, every, falls = 0, 0, []
    for attack in catalogue.attacks():
        ladder = images.ladder(scenario, attack)
        for (small, a), (large, b) in zip(ladder, ladder[1:]):
            common = np.intersect1d(a["ids"], b["ids"])
            if len(common) == 0:
                continue
            compared += 1
            every += len(common) == len(a["ids"]) == len(b["ids"])
            pair = Paired.of(a, b, common)
            if (
                pair.after < pair.before - NOISE
                and sign_test(pair.lost, pair.gained) < SIGNIFICANCE
            ):
                falls.append(
                    (
                        attack,
                        f"{attack} {pair.before} → {pair.after} of {len(common)} "
                        f"(eps {small:.4g} → {large:.4g})",
                    )
                )
    if not compared:
        return Check(name, None, "")
    if falls:
        doubts = tuple(dict.fromkeys(attackers_worst_case(a, catalogue) for a, _ in falls))
        return Check(name, False, "; ".join(text for _, text in falls), doubts)
    return Check(
        name,
        True,
        f"{compared} comparison(s) on the images met at both eps, {every} on every image",
    )


def unbounded(rows: list[Row], scenario: str, catalogue: Catalogue) -> Check:
    row = find(rows, scenario, catalogue.checked_by("unbounded"), 1.0)
    if row is None:
        return Check("unbounded attack", None, "")
    return Check(
        "unbounded attack",
        row.error >= UNBOUNDED_MIN,
        f"{row.error:.3f} at eps 1 (needs >= {UNBOUNDED_MIN})",
        (WORST_CASE,),
    )


def doubling(
    images: PerImage, scenario: str, epsilon: float, catalogue: Catalogue, test_images: int
) -> Check:
    """Each 2x run against the run it repeats, on the same images: the change in images broken,
    as a share of the test images (what it could move a worst case by); a failure is a change
    of ``DOUBLING_MAX`` or more that chance does not explain (``sign_test``, either way)."""
    name = "2x effort"
    if not images.present:
        return Check(name, None, "no examples.parquet")
    runs = [s for s in catalogue.shown.values() if s.checks == "doubled" and s.reference]
    details, failed = [], []
    for run in runs:
        once, twice = (images.at(scenario, n, epsilon) for n in (run.reference, run.name))
        if once is None or twice is None or not test_images:
            continue
        common = np.intersect1d(once["ids"], twice["ids"])
        pair = Paired.of(once, twice, common)
        change = (pair.after - pair.before) / test_images
        chance = 2 * sign_test(max(pair.lost, pair.gained), min(pair.lost, pair.gained))
        text = f"{run.reference} {pair.before} → {pair.after} of {len(common)} ({change:+.3f}"
        details.append(text + (f", p {min(chance, 1):.2g})" if pair.lost + pair.gained else ")"))
        if abs(change) >= DOUBLING_MAX and chance < SIGNIFICANCE:
            failed.append(run.reference)
    if not details:
        return Check(name, None, "")
    doubts = tuple(dict.fromkeys(attackers_worst_case(a, catalogue) for a in failed))
    return Check(
        name,
        not failed,
        "; ".join(details)
        + f" (fails on a change >= {DOUBLING_MAX} of {test_images} with p < {SIGNIFICANCE})",
        doubts,
    )


def black_box(catalogue: Catalogue) -> list[str]:
    """The black-box attacks (a 2x run repeats one, and is no attack of its own)."""
    return [n for n in catalogue.boxed("black") if not catalogue.is_sanity(n)]


def black_box_below_white_box(
    images: PerImage, scenario: str, epsilon: float, catalogue: Catalogue
) -> Check:
    """No black-box attack above the strongest white-box one that met every image it met."""
    name = "black-box <= white-box"
    if not images.present:
        return Check(name, None, "no examples.parquet")
    details, failed = [], False
    for black in black_box(catalogue):
        mine = images.at(scenario, black, epsilon)
        if mine is None or len(mine["ids"]) == 0:
            continue
        ids = mine["ids"]
        rivals = {}  # the white-box attacks that met every image it met, paired with it
        for white in catalogue.boxed("white"):
            theirs = images.at(scenario, white, epsilon)
            if theirs is not None and np.isin(ids, theirs["ids"]).all():
                rivals[white] = Paired.of(mine, theirs, ids)
        if not rivals:
            details.append(f"{black}: no white-box attack met its {len(ids)} images")
            continue
        top = max(rivals, key=lambda white: rivals[white].after)
        pair = rivals[top]  # lost: broken by the black-box attack alone
        above = pair.lost > pair.gained and sign_test(pair.lost, pair.gained) < SIGNIFICANCE
        failed |= above
        details.append(
            f"{black} {pair.before} vs {top} {pair.after} of {len(ids)}"
            + (": gradient masking?" if above else "")
        )
    if not details:
        return Check(name, None, "")
    compared = any(" vs " in d for d in details)
    return Check(name, not failed if compared else None, "; ".join(details), (WORST_CASE,))


def square_after_gradients(
    images: PerImage, scenario: str, epsilon: float, catalogue: Catalogue
) -> Check:
    """AutoAttack's ``check_square_sr``: Square, its last part, breaking more than
    ``SQUARE_MAX`` of the images than the gradient parts before it."""
    name = "Square after gradient attacks"
    if not images.present:
        return Check(name, None, "no examples.parquet")
    details, failed = [], []
    for attack in catalogue.attacks():
        found = images.at(scenario, attack, epsilon)
        if found is None or found["parts"] is None or not (found["parts"] != "").any():
            continue
        parts = found["parts"]
        by_square = int((parts == SQUARE).sum())
        left = int((parts == SQUARE).sum() + (~found["wrong"]).sum())
        n = len(parts)
        details.append(f"{attack}: Square broke {by_square} of the {left} its gradients left")
        if by_square / n > SQUARE_MAX:
            failed.append(attack)
    if not details:
        return Check(name, None, "")
    doubts = tuple(dict.fromkeys(attackers_worst_case(a, catalogue) for a in failed))
    return Check(name, not failed, "; ".join(details), doubts)


def checks(
    rows: list[Row],
    scenario: str,
    epsilon: float | None,
    catalogue: Catalogue,
    images: PerImage | None = None,
) -> list[Check]:
    images = images or PerImage(None)
    found = [
        rising_with_epsilon(images, scenario, catalogue),
        unbounded(rows, scenario, catalogue),
    ]
    if epsilon is not None:
        test = find(rows, scenario, "test")
        found += [
            doubling(images, scenario, epsilon, catalogue, test.n if test else 0),
            black_box_below_white_box(images, scenario, epsilon, catalogue),
            square_after_gradients(images, scenario, epsilon, catalogue),
        ]
    return found


def doubts(
    rows: list[Row],
    scenarios: list[str],
    epsilon: float | None,
    catalogue: Catalogue,
    images: PerImage | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Per scenario, per worst case: the failed checks that cast doubt on it."""
    found: dict[str, dict[str, list[str]]] = {}
    for scenario in scenarios:
        mine = found.setdefault(scenario, {})
        for check in checks(rows, scenario, epsilon, catalogue, images):
            if check.passed is False:
                for worst_case in check.doubts or (WORST_CASE,):
                    mine.setdefault(worst_case, []).append(check.name)
    return found


def section(
    rows: list[Row],
    scenarios: list[str],
    epsilon: float | None,
    catalogue: Catalogue,
    images: PerImage | None = None,
) -> str:
    table = {s: checks(rows, s, epsilon, catalogue, images) for s in scenarios}
    if not any(c.passed is not None for found in table.values() for c in found):
        return ""
    names = [c.name for c in next(iter(table.values()))]
    body = [[s, *(c.cell() for c in found)] for s, found in table.items()]
    doubled = [s.reference for s in catalogue.shown.values() if s.checks == "doubled"]
    return (
        "\n## Sanity checks\n\n"
        "Signs that the evaluation, not the defence, is weak (Carlini et al. 2019; Croce & "
        "Hein 2020), each on images both of its sides met. Error rises with eps: per attack, "
        f"images broken at each eps against the next (a fall of more than {NOISE} image "
        f"that chance does not explain fails: a sign test on the images only one eps broke, "
        f"p < {SIGNIFICANCE}; in cascade mode an attack never meets again an image it broke, "
        "so only the attacks that met every image can fail it). Unbounded: the white-box PGD "
        "(the key and the transform's own backward) at eps 1 reaches >= "
        f"{UNBOUNDED_MIN}. 2x effort: {', '.join(doubled)} again with twice the effort on "
        f"the images each met; a change of {DOUBLING_MAX} of the test images or more, "
        f"either way, with p < {SIGNIFICANCE} fails. Black-box ("
        + ", ".join(black_box(catalogue))
        + ") <= white-box ("
        + ", ".join(catalogue.boxed("white"))
        + "): on the images the black-box attack met, against the strongest white-box "
        f"attack that met them all; above it beyond chance (p < {SIGNIFICANCE}) suggests "
        "gradient masking. Square after "
        f"gradient attacks: AutoAttack's own flag, Square breaking more than {SQUARE_MAX:.1%} "
        "of the images. A failure is named beside the headline figure it casts doubt on.\n\n"
        + markdown_table(["Scenario", *names], body)
    )
