"""The evaluation's tables from its per-image rows, and what its attacks ran with: shared by
``lie-ray evaluate`` and the Python API (``lie_ray.api``), and free of Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lie_ray.attacks import registry
from lie_ray.attacks.outcome import effective_epsilon
from lie_ray.attacks.spec import AttackSpec
from lie_ray.errors import LieRayError
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.infra.tables import read_training

Z_95 = 1.959963984540054


def trained_rows(runs_dir: str | Path, scenarios: list[str] | None) -> list[dict]:
    """The trained scenarios in ``RUNS/training.parquet`` (all, or those in ``scenarios``), as
    rows."""
    rows = read_training(runs_dir).to_pylist()
    if scenarios:
        unknown = set(scenarios) - {r["scenario"] for r in rows}
        if unknown:
            raise LieRayError(f"scenario(s) {sorted(unknown)} were not trained in {runs_dir}")
        rows = [r for r in rows if r["scenario"] in scenarios]
    return rows


def attack_record(settings: EvalSettings) -> dict:
    """What the attacks ran with, spelled out for the report (AutoAttack's version alone does
    not say its iterations, targets and queries), and how each attack is shown
    (``AttackSpec.shown``): lie_ray's own, whether they ran or not (the report's columns stay
    the same), and any other named; a report renders from the record without their packages."""
    chosen = record_specs(settings)
    record = {}
    for spec in chosen:
        if spec.budget is not None:
            record.update(spec.budget(settings))
    record["single_run"] = [spec.name for spec in chosen if not spec.restarts]
    record["scoring"] = "8-bit images within eps exactly"
    record["ball"] = ball_record(settings)
    record["mode"] = settings.mode
    shown = {spec.name: spec for spec in [*registry.default_attacks(), *chosen]}
    record["catalogue"] = {name: spec.shown() for name, spec in shown.items()}
    phrases = [spec.budget_text(settings) for spec in chosen if spec.budget_text is not None]
    if record["single_run"]:
        phrases.append(f"one run, not restarted: {', '.join(record['single_run'])}")
    record["summary"] = (
        "; ".join([*phrases, f"scored as {record['scoring']}"]) + MODES[settings.mode]
    )
    return record


def ball_record(settings: EvalSettings) -> dict:
    """Each epsilon asked for, the ball its attacks worked in (the one they are scored in,
    ``effective_epsilon``) and the PGD step there; rows keep the epsilon asked for."""
    balls = {}
    for eps in settings.epsilons:
        if eps > 0:
            effective = effective_epsilon(eps)
            balls[f"{eps:g}"] = {
                "levels": round(effective * 255),
                "effective": effective,
                "step_size": settings.step_size(effective),
            }
    return balls


def record_specs(settings: EvalSettings) -> list[AttackSpec]:
    """The attacks a run with these settings may run (applicable or not), and its sanity runs."""
    chosen = registry.chosen(settings.attacks)
    return [*chosen, *registry.sanity_runs(chosen)]


# How the evaluation chose its images, in words for the report.
MODES = {
    "full": "; every attack on every test image",
    "cascade": "; as a cascade: the paper's readings on every test image, every other "
    "attack cheapest first on the images its attacker had not yet broken (its own error is "
    "over those n images; the worst cases are over all, at this epsilon or a smaller one)",
}


def wilson_interval(wrong: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval for an error rate: sane at 0 and 1, unlike the normal one."""
    if n == 0:
        return 0.0, 1.0
    p = wrong / n
    centre = (p + Z_95**2 / (2 * n)) / (1 + Z_95**2 / n)
    half = Z_95 * math.sqrt(p * (1 - p) / n + Z_95**2 / (4 * n * n)) / (1 + Z_95**2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def summarise(examples: pa.Table) -> pa.Table:
    """Per (scenario, evaluation, epsilon): the error over the images the evaluation ran on
    (all of them, but for an attack the cascade ran on its attacker's unbroken images)."""
    examples = examples.filter(examples["attacked"])
    wrong = pc.invert(examples["correct"]).cast(pa.int64())
    grouped = (
        examples.append_column("wrong", wrong)
        .group_by(["scenario", "evaluation", "epsilon"])
        .aggregate([("wrong", "sum"), ("wrong", "count"), ("linf", "max")])
    )
    rows = []
    for r in grouped.to_pylist():
        n, errors = r["wrong_count"], r["wrong_sum"]
        low, high = wilson_interval(errors, n)
        rows.append(
            {
                "scenario": r["scenario"],
                "evaluation": r["evaluation"],
                "epsilon": r["epsilon"],
                "n": n,
                "error": errors / n,
                "ci_low": low,
                "ci_high": high,
                "max_linf": r["linf_max"],
            }
        )
    return pa.Table.from_pylist(rows).sort_by(
        [("scenario", "ascending"), ("evaluation", "ascending"), ("epsilon", "ascending")]
    )
