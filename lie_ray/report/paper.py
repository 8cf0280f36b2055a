"""The paper's tables in ``report.md``: Table I, the adaptive evaluation and the headline.

The paper reads a low error under its own PGD (plain autograd through the true cipher) as
robustness. That gradient is zero through the cipher's quantisation and nibble split, so the
report puts the paper's protocol next to the adaptive attacks and makes the worst case the
headline. Built from ``results.parquet`` (and ``training.parquet``'s last epoch where the
evaluation did not measure a clean error) as ``Row`` and ``Training`` values, which the curves
and the family table read too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from lie_ray.attacks.spec import (
    PLAIN_IMAGE_TIERS,
    WORST_CASE,
    WORST_CASE_KEYLESS,
    WORST_CASE_NAMES,
    WORST_CASES,
)
from lie_ray.evaluation.settings import PAPER_EPSILON
from lie_ray.evaluation.settings import headline_epsilon as headline_of
from lie_ray.infra.tables import RESULT_COLUMNS, TRAINING_COLUMNS, read_results
from lie_ray.report.catalogue import CLEAN_EVALUATIONS, Catalogue
from lie_ray.report.markdown import MISSING, cell, markdown_table
from lie_ray.scenarios import PAPER_SCENARIOS

AMBIGUITY = (
    'The paper says only that it "generated adversarial noise by PGD, added the noise '
    'to the test images and then, encrypted them", which leaves open where the PGD '
    "gradient was taken: through the true cipher (`pgd`, zero gradient), on the "
    "encrypted image the network sees (`paper-literal`), or on the plain image with "
    "the identity as the cipher's backward (`bpda-identity`)."
)
THREAT_MODELS = (
    "Each worst case is one attacker's, per image over the evaluations that "
    "attacker can run, at this epsilon or a smaller one (whose perturbation lies "
    "in the larger ball), starting from the clean prediction. All perturb the PLAIN "
    "image by at most epsilon (L-inf, whole 8-bit levels) before it is encrypted "
    "with the defender's key and classified. `worst-case-keyless` holds the "
    "network's weights, the transform and its public parameters, labelled images of "
    "its own (held out of training, never attacked) and queries to the deployed "
    "pipeline, but no key and no leaked pair (EOT over keys of its own, transfer from "
    "a plain model, gradient-free queries, the bypass: a stand-in for the keyed "
    "transform with the transform's own structure fitted through the network, and "
    "the key search: the key under which the network is most accurate on its "
    "images): the threat a key-based defence claims to meet, so it is the headline. "
    "It no longer takes leaked pairs: `worst-case-leaked` adds `recovered-key-k`, PGD "
    "with the key recovered from k leaked plain/encrypted pairs of its own images "
    "(only where one key serves every image and pairs reveal it). `worst-case` also "
    "holds the key (BPDA, AutoAttack, and the paper's readings): what is left once "
    "the key leaks. `worst-case-channel` adds an attacker who edits the ENCRYPTED "
    "image in transit by at most epsilon in ciphertext space, a different threat "
    "whose epsilon does not compare with the plain-image one. Without a key there is "
    "nothing to withhold or leak: every plain-image attacker runs every plain-image "
    "attack and their worst cases coincide."
)
# Table I of the paper: train / test / adversarial error.
PAPER_TABLE_I: dict[str, tuple[float, float, float]] = {
    "Plain": (0.006, 0.137, 1.000),
    "Encrypted": (0.011, 0.166, 0.269),
    "Encrypted-Adv": (0.093, 0.830, 0.040),
    "Encrypted-DK": (0.431, 0.506, 0.792),
    "Encrypted-Adv-DK": (0.657, 0.617, 0.690),
}


@dataclass(frozen=True)
class Row:
    scenario: str
    evaluation: str
    epsilon: float
    n: int
    error: float
    ci_low: float
    ci_high: float
    transform: str = ""  # "none" for plain images; "" when the table does not say


@dataclass(frozen=True)
class Training:
    train_error: float
    test_error: float
    epochs: int


# --- loading -------------------------------------------------------------------------------


def load_results(directory: Path) -> list[Row]:
    table = read_results(directory)
    columns = list(RESULT_COLUMNS) + (["transform"] if "transform" in table.column_names else [])
    return [
        Row(
            scenario=str(r["scenario"]),
            evaluation=str(r["evaluation"]),
            epsilon=float(r["epsilon"]),
            n=int(r["n"]),
            error=float(r["error"]),
            ci_low=float(r["ci_low"]),
            ci_high=float(r["ci_high"]),
            transform=str(r.get("transform") or ""),
        )
        for r in table.select(columns).to_pylist()
    ]


def training_metrics(table: pa.Table | None) -> dict[str, Training]:
    """Training metrics by scenario; empty when there are none (the report then shows '-')."""
    if table is None:
        return {}
    return {
        str(r["scenario"]): Training(
            float(r["train_error"]), float(r["test_error"]), int(r["epochs"])
        )
        for r in table.select(list(TRAINING_COLUMNS)).to_pylist()
    }


# --- selection -----------------------------------------------------------------------------


def scenario_order(rows: list[Row], training: dict[str, Training]) -> list[str]:
    """The paper's five in its order, then any others in the order they first appear.

    Sorting by name would put Encrypted-Adv-DK before Encrypted-DK and scatter the paper's
    table; first appearance keeps the user's own order, which is also deterministic.
    """
    seen = dict.fromkeys([r.scenario for r in rows] + list(training))
    paper = [name for name in PAPER_SCENARIOS if name in seen]
    return paper + [name for name in seen if name not in PAPER_SCENARIOS]


def is_adversarial(row: Row, catalogue: Catalogue) -> bool:
    """An attack's row (not a clean error, not a sanity check's run)."""
    return catalogue.is_adversarial(row.evaluation)


def same_epsilon(a: float, b: float) -> bool:
    """Epsilons may have passed through float32 on the way, so compare with a tolerance."""
    return math.isclose(a, b, rel_tol=0.0, abs_tol=1e-6)


def headline_epsilon(rows: list[Row], catalogue: Catalogue) -> float | None:
    """The headline epsilon of the epsilons attacked (``evaluation.settings``' one rule)."""
    return headline_of(r.epsilon for r in rows if is_adversarial(r, catalogue))


def find(
    rows: list[Row], scenario: str, evaluation: str, epsilon: float | None = None
) -> Row | None:
    """The matching row; for clean evaluations (no ``epsilon``) the smallest epsilon wins."""
    matches = [
        r
        for r in rows
        if r.scenario == scenario
        and r.evaluation == evaluation
        and (epsilon is None or same_epsilon(r.epsilon, epsilon))
    ]
    return min(matches, key=lambda r: r.epsilon, default=None)


def adaptive_columns(rows: list[Row], catalogue: Catalogue) -> list[str]:
    """The catalogue's evaluations in its order; ones it does not know are kept (sorted)
    before the worst case rather than silently dropped."""
    known = catalogue.adaptive_columns()
    present = {r.evaluation for r in rows if is_adversarial(r, catalogue)}
    extra = sorted(present - set(known))
    split = known.index(WORST_CASE_KEYLESS)
    return known[:split] + extra + known[split:]


def sample_size(
    rows: list[Row],
    evaluation: str | None = None,
    epsilon: float | None = None,
    catalogue: Catalogue | None = None,
) -> str:
    """'n=100' for the rows matched (or 'n=24..100' when they differ): every figure says n."""
    sizes = sorted(
        {
            r.n
            for r in rows
            if (evaluation is None or r.evaluation == evaluation)
            and (evaluation is not None or is_adversarial(r, catalogue))
            and (epsilon is None or same_epsilon(r.epsilon, epsilon))
        }
    )
    if not sizes:
        return "n=?"
    return f"n={sizes[0]}" if len(sizes) == 1 else f"n={sizes[0]}..{sizes[-1]}"


# --- markdown ------------------------------------------------------------------------------


def render_report(
    rows: list[Row],
    training: dict[str, Training],
    scenarios: list[str],
    epsilon: float | None,
    gallery: bool,
    doubts: dict[str, dict[str, list[str]]] | None = None,
    catalogue: Catalogue | None = None,
    notes: dict[str, str] | None = None,
) -> str:
    """``doubts``: the sanity checks each scenario failed, named beside its headline;
    ``notes``: anything else said there (a bypass that fitted badly); ``catalogue``: how the
    results' evaluations are shown (lie_ray's own by default)."""
    catalogue = catalogue or Catalogue.builtin()
    sections = [
        "# Adversarial test of learnable image encryption\n",
        table_one(rows, training, scenarios, epsilon, catalogue),
        adaptive_table(rows, scenarios, epsilon, catalogue),
        headline(rows, scenarios, epsilon, doubts or {}, catalogue, notes or {}),
        figures(gallery),
    ]
    return "\n".join(sections)


def describe_epsilon(epsilon: float | None) -> str:
    if epsilon is None:
        return "no adversarial evaluation was found in results.parquet"
    if same_epsilon(epsilon, PAPER_EPSILON):
        return f"epsilon = {PAPER_EPSILON:g} (the paper's)"
    return (
        f"epsilon = {epsilon:g}, the largest evaluated (the paper used {PAPER_EPSILON:g}, "
        "which is absent from these results)"
    )


def clean_error(
    rows: list[Row], training: dict[str, Training], scenario: str, evaluation: str
) -> tuple[float | None, bool]:
    """(error, from training): from results.parquet when evaluated there (same test images as
    the attacks), else from training.parquet's last epoch, which the caller must label."""
    row = find(rows, scenario, evaluation)
    if row is not None:
        return row.error, False
    metrics = training.get(scenario)
    if metrics is None:
        return None, False
    return (metrics.train_error if evaluation == "train" else metrics.test_error), True


def clean_cell(
    rows: list[Row], training: dict[str, Training], scenario: str, evaluation: str
) -> str:
    value, from_training = clean_error(rows, training, scenario, evaluation)
    return cell(value) + ("*" if from_training and value is not None else "")


def closest_reading(
    rows: list[Row], scenarios: list[str], epsilon: float | None, readings: list[str]
) -> str:
    """Which reading of the paper's protocol comes closest to its Table I: the smallest mean
    absolute difference from the paper's adversarial errors, over the paper's scenarios where
    every reading ran (on Plain, with no cipher, they would coincide)."""
    if epsilon is None:
        return ""
    found = {
        s: [find(rows, s, r, epsilon) for r in readings] for s in scenarios if s in PAPER_TABLE_I
    }
    common = [s for s, readings in found.items() if all(readings)]
    if not common:
        return ""
    gaps = {
        reading: sum(abs(found[s][i].error - PAPER_TABLE_I[s][2]) for s in common) / len(common)
        for i, reading in enumerate(readings)
    }
    best = min(gaps, key=gaps.get)
    listed = ", ".join(f"`{r}` {gap:.3f}" for r, gap in gaps.items())
    return (
        f"Closest to the paper's adversarial column: **`{best}`** (mean absolute "
        f"difference over {', '.join(common)}: {listed}).\n\n"
    )


def table_one(
    rows: list[Row],
    training: dict[str, Training],
    scenarios: list[str],
    epsilon: float | None,
    catalogue: Catalogue,
) -> str:
    readings = catalogue.readings()
    clean_n = {e: sample_size(rows, e) for e in CLEAN_EVALUATIONS}
    attack_n = sample_size(rows, catalogue.protocol(), epsilon)
    header = [
        "Scenario",
        "epochs",
        "train (during training)",
        f"clean train ({clean_n['train']})",
        f"test ({clean_n['test']})",
        *(f"adversarial: {catalogue.label(r)}" for r in readings),
        "paper train",
        "paper test",
        "paper adversarial",
    ]
    body = []
    for scenario in scenarios:
        found = [
            find(rows, scenario, r, epsilon) if epsilon is not None else None for r in readings
        ]
        paper = PAPER_TABLE_I.get(scenario)
        metrics = training.get(scenario)
        clean_train = find(rows, scenario, "train")
        body.append(
            [
                scenario,
                str(metrics.epochs) if metrics else MISSING,
                cell(metrics.train_error if metrics else None),
                cell(clean_train.error if clean_train else None),
                clean_cell(rows, training, scenario, "test"),
                *(cell(r.error if r else None) for r in found),
                *(cell(v) for v in (paper or (None, None, None))),
            ]
        )
    return (
        "## Table I: error rates (lower is better)\n\n"
        "Ours: the train error as the paper recorded it, during training's last epoch on "
        "what was trained on (augmented, encrypted, and adversarial for the -Adv "
        "scenarios; training.parquet); the clean train error of the trained model, in eval "
        "mode, on the evaluation's train images (which under --train-limit include images "
        "it never saw); the clean test error on the evaluation's images (n in the header; "
        "* marks a value from training.parquet's last epoch instead, measured on the "
        f"training run's own test images); adversarial error under each reading of the "
        f"paper's protocol at {describe_epsilon(epsilon)} ({attack_n} test images). The "
        "paper's figures are for the whole CIFAR-10 test set after 100 epochs; '-' marks a "
        "value that is not available.\n\n"
        + markdown_table(header, body)
        + "\n"
        + AMBIGUITY
        + " "
        + closest_reading(rows, scenarios, epsilon, readings)
    )


def interval_cell(row: Row) -> str:
    return f"{row.error:.3f} [{row.ci_low:.2f}, {row.ci_high:.2f}]"


def broken(row: Row) -> int:
    """The images an evaluation broke (its error over the n it met)."""
    return round(row.error * row.n)


def adaptive_row(
    rows: list[Row], scenario: str, columns: list[str], epsilon: float | None
) -> list[str]:
    """Cells for one scenario: the error with its interval where the evaluation met every
    image, else (a cascaded attack, on the images its attacker had left) "broke b of n".
    In bold, the plain-image attack that broke the most images (ties all bold); the worst
    cases, unions of the attacks, are never bold."""
    found = {c: find(rows, scenario, c, epsilon) if epsilon is not None else None for c in columns}
    whole = max((r.n for r in found.values() if r is not None), default=0)
    attacks = [
        c
        for c in columns[: columns.index(WORST_CASE) + 1]
        if c not in WORST_CASE_NAMES and found[c] is not None
    ]
    most = max((broken(found[c]) for c in attacks), default=None)
    cells = []
    for column in columns:
        row = found[column]
        if row is None:
            cells.append(MISSING)
            continue
        text = interval_cell(row) if row.n == whole else f"broke {broken(row)} of {row.n}"
        cells.append(f"**{text}**" if column in attacks and broken(row) == most else text)
    return cells


def adaptive_table(
    rows: list[Row], scenarios: list[str], epsilon: float | None, catalogue: Catalogue
) -> str:
    columns = adaptive_columns(rows, catalogue)
    body = [[scenario, *adaptive_row(rows, scenario, columns, epsilon)] for scenario in scenarios]
    n = sample_size(rows, None, epsilon, catalogue)
    return (
        "## Adaptive evaluation\n\n"
        f"Each attack at {describe_epsilon(epsilon)} (results.parquet, {n} test images per "
        "cell): where it met every test image, its error with a 95% Wilson interval; where "
        'the cascade gave it only the images its attacker had not yet broken, "broke b of '
        'n": the n images it met and the b of them it broke. The worst cases are over every '
        "image. Columns up to `worst-case` perturb the plain image; `encrypted-input` edits "
        "the ciphertext, and `worst-case-channel` takes it too. In bold, the plain-image "
        "attack that broke the most images; '-' marks an evaluation that does not apply to "
        "(or was not run for) the scenario.\n\n"
        + markdown_table(["Scenario", *map(catalogue.label, columns)], body)
    )


def key_based(rows: list[Row], scenario: str, catalogue: Catalogue) -> bool:
    """Whether a key protects the scenario: its transform, where the table names it, else
    whether an attack that needs a transform ran on it."""
    mine = [r for r in rows if r.scenario == scenario]
    named = {r.transform for r in mine if r.transform}
    if named:
        return named != {"none"}
    return any(catalogue.encrypted_only(r.evaluation) for r in mine)


def headline_line(rows: list[Row], scenario: str, epsilon: float | None, catalogue) -> str:
    """A key-based defence's headline is its keyless worst case, the attackers with the key
    and on the channel beside it; a scenario without a key has one attacker."""
    keyless = find(rows, scenario, WORST_CASE_KEYLESS, epsilon) if epsilon is not None else None
    if keyless is None or not key_based(rows, scenario, catalogue):
        return worst_case_error(rows, scenario, epsilon, catalogue)
    others = [(w.label, find(rows, scenario, w.name, epsilon)) for w in WORST_CASES[1:]]
    beside = "; ".join(f"{label} {interval_cell(row)}" for label, row in others if row)
    return f"**keyless {interval_cell(keyless)}**" + (f" ({beside})" if beside else "")


def worst_case_error(
    rows: list[Row], scenario: str, epsilon: float | None, catalogue: Catalogue
) -> str:
    """The worst-case row; failing that, the largest error among the attacks that were run,
    labelled as such so it is not mistaken for the real worst case."""
    if epsilon is None:
        return MISSING
    row = find(rows, scenario, WORST_CASE, epsilon)
    if row is not None:
        return interval_cell(row)
    attacks = [
        r
        for r in rows
        if r.scenario == scenario
        and r.evaluation in catalogue.attacks(PLAIN_IMAGE_TIERS)
        and same_epsilon(r.epsilon, epsilon)
    ]
    if not attacks:
        return MISSING
    top = max(attacks, key=lambda r: (r.error, r.evaluation))
    return f"{interval_cell(top)} (no worst-case row; largest single attack, `{top.evaluation}`)"


def doubt_note(failed: dict[str, list[str]], key_based: bool = True) -> str:
    """The failed sanity checks, each beside the figure it casts doubt on (``failed``: per
    worst case); a scenario without a key has one figure, so they are simply listed."""
    if not failed:
        return ""
    labels = {w.name: w.label for w in WORST_CASES}
    count = sum(len(checks) for checks in failed.values())
    if key_based:
        listed = "; ".join(
            f"{', '.join(checks)} (on {labels.get(worst_case, worst_case)})"
            for worst_case, checks in failed.items()
        )
    else:
        listed = ", ".join(dict.fromkeys(c for checks in failed.values() for c in checks))
    return f" (failed sanity check{'s' if count > 1 else ''}: {listed}; see Sanity checks)"


def headline(
    rows: list[Row],
    scenarios: list[str],
    epsilon: float | None,
    doubts: dict[str, dict[str, list[str]]],
    catalogue: Catalogue,
    notes: dict[str, str] | None = None,
) -> str:
    bullets = "\n".join(
        f"- {s}: {headline_line(rows, s, epsilon, catalogue)}"
        f"{doubt_note(doubts.get(s, {}), key_based(rows, s, catalogue))}"
        f"{(notes or {}).get(s, '')}"
        for s in scenarios
    )
    n = sample_size(rows, WORST_CASE, epsilon)
    return (
        "## Headline robustness\n\n" + THREAT_MODELS + "\n\n"
        "The headline robustness figure for each scenario is a worst case (per image, "
        "the strongest of one attacker's attacks), not any single attack's: for a "
        "key-based defence the keyless attacker's, in bold, else `worst-case`. `pgd` is "
        "the paper's protocol, plain autograd through the pipeline as written. Through "
        "LE, ELE and FFX (quantisation, nibble split, lookup) that gradient is zero, so "
        "the attack sees almost nothing and its error is an upper bound on robustness (a "
        "lower bound on the error an attacker achieves), not evidence of it; on Plain and "
        "through Shuffle, NP, PE and EtC it is the true gradient, an ordinary white-box "
        "PGD. A scenario is only as robust as "
        "its worst case, at "
        f"{describe_epsilon(epsilon)} (results.parquet, {n} test images):\n\n{bullets}\n"
    )


def figures(gallery: bool) -> str:
    text = (
        "## Figures\n\n"
        "Robustness curves: error against epsilon, one line per evaluation; the thick black "
        "lines are the worst cases (solid: keyless; densely dashed: with leaked pairs; "
        "dash-dot: with the key; dashed: with "
        "the ciphertext-space attack too).\n\n![robustness curves](curves.png)\n"
    )
    if gallery:
        text += (
            "\nRows: plain, encrypted, adversarial (BPDA-PGD at eps 0.1), encrypted "
            "adversarial; each image is labelled with its true and predicted class:\n\n"
            "![gallery](gallery.png)\n"
        )
    return text
