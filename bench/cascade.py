"""The evaluation cascade against full mode, on trained models: time and agreement.

    python bench/cascade.py --runs RUNS --key KEY [--data DIR] [--preset smoke] [--images 100]

RUNS is the --out directory of 'lie-ray train' (or of a sweep). Per scenario, in one process
and one thread, the preset's every evaluation (the sanity checks' runs, which take every image
in both modes, only with --with-sanity) on the first N test images: once in full mode
(every attack on every image) and once as the cascade (each attack only on the images its
attacker has not broken yet), the models and each attacker's stand-ins built before the clock
starts. Prints each mode's seconds, their ratio and whether the worst cases agree image by
image; the last line is ``cascade vs full: R x cheaper over S scenarios (...)``, the ratio of
the summed times, measured in the same run. Beside it: the time the paper's three readings
took (they run on every image in both modes, for Table I, so no cascade can cost less: full
over readings is the most it can save) and the ratio of what the two modes spent beyond them,
on the worst cases; and, per scenario, how many worst-case rows differ between the modes.

The floor: an image that no attack of its attacker breaks at an epsilon is attacked by every
one of them there, in any cascade and any order. Full mode times each attack at each epsilon,
and the floor charges it that time's share for the rows its attacker never broke, plus the
readings and what both modes spend outside attacks (clean predictions, unions). Attack time is
not quite linear in rows (a smaller batch costs more per image), so the floor is a little
generous to the cascade; full over floor is the most any cascade could save on these models.
A second floor prices the other choice: the readings on every image only at Table I's
epsilon, and cascaded like any attack at the others.
"""

from __future__ import annotations

import argparse
import collections
import json
import platform
import time

import numpy as np
import pyarrow.parquet as pq
import torch

from lie_ray.attacks import registry
from lie_ray.attacks.spec import WORST_CASE_NAMES as WORST_CASES
from lie_ray.data.cifar import load_split
from lie_ray.evaluation import cascade
from lie_ray.evaluation.actor import EvaluateShard
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.settings import get_eval_preset

PAPER_READINGS = [s.name for s in registry.default_attacks() if s.role == "paper-reading"]
SANITY = [s.name for s in registry.sanity_runs()]

SECONDS: collections.Counter[tuple] = collections.Counter()  # (mode, attack, eps): this scenario


UNTIMED_RUN = Engine.run


def timing_attacks(mode: str) -> None:
    """Time every attack the engine runs (not the sanity runs, which take every image in both
    modes): its seconds add up under (mode, name, epsilon)."""

    def timed(engine, spec, part, eps, *rest):
        start = time.perf_counter()
        try:
            return UNTIMED_RUN(engine, spec, part, eps, *rest)
        finally:
            if not spec.is_sanity:
                SECONDS[mode, spec.name, float(eps)] += time.perf_counter() - start

    Engine.run = timed


def seconds_of(mode: str, names) -> float:
    return sum(s for (m, n, _), s in SECONDS.items() if m == mode and n in names)


def floor(
    full: dict,
    encrypted: bool,
    images: int,
    full_seconds: float,
    every_image_at: set[float] | None = None,
) -> float:
    """Seconds no cascade can beat on these models (see the module's docstring), with the
    paper's readings on every image at ``every_image_at`` (None: every epsilon, as now)."""
    attacks = {n for (m, n, _) in SECONDS if m == "full"}
    ran = attacks & set(full["evaluation"])
    plan = cascade.Plan([s for s in registry.default_attacks() if s.name in ran], encrypted)
    total = full_seconds - seconds_of("full", attacks)  # outside attacks, the same in both
    for (mode, name, eps), seconds in SECONDS.items():
        if mode != "full":
            continue
        if name in PAPER_READINGS and (every_image_at is None or eps in every_image_at):
            total += SECONDS["cascade", name, eps]  # on every image in the cascade too
        elif name in plan.narrowest:
            rows = (full["evaluation"] == plan.narrowest[name]) & (full["epsilon"] == eps)
            total += seconds * full["correct"][rows].sum() / images
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--data", default="../shared/data/cifar-10-batches-py")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument(
        "--with-sanity",
        action="store_true",
        help="also time the sanity checks' three white-box runs (on every image in both modes)",
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = pq.read_table(f"{args.runs}/training.parquet").to_pylist()
    plain = next((r["checkpoint"] for r in trained if r["scenario"] == "Plain"), None)
    settings = get_eval_preset(args.preset).replace(sanity=args.with_sanity)
    test = load_split(args.data, "test").head(args.images)
    attacker = load_split(args.data, "train").images[: settings.attacker_images]
    print(
        f"machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} torch thread; preset {args.preset}, {args.images} images, "
        f"epsilons {', '.join(f'{e:.4f}' for e in settings.epsilons)}"
    )
    totals = {"full": 0.0, "cascade": 0.0}
    readings = {"full": 0.0, "cascade": 0.0}
    floors = {"now": 0.0, "headline only": 0.0}
    for row in trained:
        name = row["scenario"]
        scenarios = {name: {"checkpoint": row["checkpoint"]}}
        outputs, seconds = {}, {}
        SECONDS.clear()
        for mode in totals:
            shard = EvaluateShard(scenarios, args.key, settings.replace(mode=mode), plain, attacker)
            defender = shard.engine(name).defender  # network, stand-ins, recovered keys: once
            timing_attacks(mode)
            start = time.perf_counter()
            parts = [
                shard.evaluate_chunk(
                    name, "test", test.images[rows], test.labels[rows], test.ids[rows]
                )
                for rows in np.array_split(
                    np.arange(args.images), max(1, args.images // settings.batch_size)
                )
            ]
            seconds[mode] = time.perf_counter() - start
            outputs[mode] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            totals[mode] += seconds[mode]
        full_worst, cascade_worst = (worst_cases(outputs[m]) for m in ("full", "cascade"))
        differ = sum(full_worst[k] != cascade_worst.get(k) for k in full_worst)
        read = {m: seconds_of(m, PAPER_READINGS) for m in readings}
        readings = {m: readings[m] + read[m] for m in readings}
        least = floor(outputs["full"], defender.encrypted, args.images, seconds["full"])
        floors["now"] += least
        floors["headline only"] += floor(
            outputs["full"],
            defender.encrypted,
            args.images,
            seconds["full"],
            {settings.headline_epsilon()},
        )
        attacked = {
            m: int(
                o["attacked"][
                    (o["epsilon"] > 0) & ~np.isin(o["evaluation"], [*WORST_CASES, *SANITY])
                ].sum()
            )
            for m, o in outputs.items()
        }
        print(
            json.dumps(
                {
                    "scenario": name,
                    "full_s": round(seconds["full"], 1),
                    "cascade_s": round(seconds["cascade"], 1),
                    "ratio": round(seconds["full"] / seconds["cascade"], 2),
                    "attacked_full": attacked["full"],
                    "attacked_cascade": attacked["cascade"],
                    "readings_full_s": round(read["full"], 1),
                    "readings_cascade_s": round(read["cascade"], 1),
                    "floor_s": round(least, 1),
                    "full_over_floor": round(seconds["full"] / least, 2),
                    "worst_case_rows": len(full_worst),
                    "worst_case_rows_differ": differ,
                }
            )
        )
    beyond = {m: totals[m] - readings[m] for m in totals}
    print(
        f"paper's readings (every image, both modes): {readings['full']:.0f} s full, "
        f"{readings['cascade']:.0f} s cascade; at most {totals['full'] / readings['cascade']:.2f}x "
        f"for any cascade; beyond them {beyond['full']:.0f} s full, {beyond['cascade']:.0f} s "
        f"cascade: {beyond['full'] / beyond['cascade']:.2f}x"
    )
    print(
        f"floor (the readings, plus every attack on the images its attacker never broke): "
        f"{floors['now']:.0f} s; at most {totals['full'] / floors['now']:.2f}x for any "
        f"cascade on these models; with the readings on every image only at "
        f"{settings.headline_epsilon():.4f} (Table I's), {floors['headline only']:.0f} s: at "
        f"most {totals['full'] / floors['headline only']:.2f}x"
    )
    print(
        f"cascade vs full: {totals['full'] / totals['cascade']:.2f}x cheaper over "
        f"{len(trained)} scenarios ({totals['full']:.0f} s full, {totals['cascade']:.0f} s "
        f"cascade, {args.images} images, preset {args.preset})"
    )


def worst_cases(output: dict) -> dict:
    rows = np.isin(output["evaluation"], WORST_CASES)
    return {
        (str(e), float(eps), int(i)): bool(c)
        for e, eps, i, c in zip(
            output["evaluation"][rows],
            output["epsilon"][rows],
            output["id"][rows],
            output["correct"][rows],
        )
    }


if __name__ == "__main__":
    main()
