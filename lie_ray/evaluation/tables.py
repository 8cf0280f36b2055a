"""The evaluation's tables from its per-image rows, and what its attacks ran with: shared by
``lie-ray evaluate`` and the Python API (``lie_ray.api``), and free of Ray."""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lie_ray.attacks.library import autoattack_settings
from lie_ray.errors import LieRayError
from lie_ray.evaluation.settings import SINGLE_RUN, EvalSettings
from lie_ray.infra.tables import read_training as training_table

Z_95 = 1.959963984540054


def read_training(runs_dir: str | Path, scenarios: list[str] | None) -> list[dict]:
    """The trained scenarios in ``RUNS/training.parquet`` (all, or those in ``scenarios``)."""
    rows = training_table(runs_dir).to_pylist()
    if scenarios:
        unknown = set(scenarios) - {r["scenario"] for r in rows}
        if unknown:
            raise LieRayError(f"scenario(s) {sorted(unknown)} were not trained in {runs_dir}")
        rows = [r for r in rows if r["scenario"] in scenarios]
    return rows


def attack_record(settings: EvalSettings) -> dict:
    """What the attacks ran with, spelled out for the report (AutoAttack's version alone does
    not say its iterations, targets and queries)."""
    return {
        "autoattack": autoattack_settings(
            settings.autoattack, settings.autoattack_steps, settings.square_queries
        ),
        "pgd": {
            "steps": settings.pgd_steps,
            "restarts": settings.pgd_restarts,
            "restarts_exempt": list(SINGLE_RUN),
            "best_iterate": True,
            "step_size": "eps / 10",
        },
        "eot": {"keys_per_step": settings.eot_keys, "fresh_keys_every_step": True},
        "square_queries": settings.square_queries,
        "pba": {"images": settings.attacker_images, "steps": settings.pba_steps},
        "scoring": "8-bit images within eps exactly",
        "mode": settings.evaluation,
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
