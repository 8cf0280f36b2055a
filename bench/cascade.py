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

from lie_ray.data.cifar import load_split
from lie_ray.evaluation import protocols
from lie_ray.evaluation.actor import EvaluateShard
from lie_ray.evaluation.settings import PAPER_READINGS, SANITY, WORST_CASES, get_eval_preset

READINGS_SECONDS: collections.Counter[str] = collections.Counter()  # by mode, this scenario


def timing_readings(mode: str) -> None:
    """Wrap the paper's readings so their seconds add up under ``mode``."""
    for name in PAPER_READINGS:
        protocol = getattr(protocols.PROTOCOLS[name], "timed", protocols.PROTOCOLS[name])

        def timed(*args, protocol=protocol):
            start = time.perf_counter()
            try:
                return protocol(*args)
            finally:
                READINGS_SECONDS[mode] += time.perf_counter() - start
        timed.timed = protocol
        protocols.PROTOCOLS[name] = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--data", default="../shared/data/cifar-10-batches-py")
    parser.add_argument("--preset", default="smoke")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--with-sanity", action="store_true", help="also time the sanity "
                        "checks' three white-box runs (on every image in both modes)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trained = pq.read_table(f"{args.runs}/training.parquet").to_pylist()
    plain = next((r["checkpoint"] for r in trained if r["scenario"] == "Plain"), None)
    settings = get_eval_preset(args.preset).replace(sanity=args.with_sanity)
    test = load_split(args.data, "test").head(args.images)
    attacker = load_split(args.data, "train").images[:settings.attacker_images]
    print(f"machine: {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} torch thread; preset {args.preset}, {args.images} images, "
          f"epsilons {', '.join(f'{e:.4f}' for e in settings.epsilons)}")
    totals = {"full": 0.0, "cascade": 0.0}
    readings = {"full": 0.0, "cascade": 0.0}
    for row in trained:
        name = row["scenario"]
        scenarios = {name: {"checkpoint": row["checkpoint"]}}
        outputs, seconds = {}, {}
        READINGS_SECONDS.clear()
        for mode in totals:
            shard = EvaluateShard(scenarios, args.key, settings.replace(evaluation=mode), plain,
                                  attacker)
            shard.load(name)  # network, PBA's stand-in, recovered keys: once per scenario
            timing_readings(mode)
            start = time.perf_counter()
            parts = [shard.evaluate(name, "test", test.images[rows], test.labels[rows],
                                    test.ids[rows])
                     for rows in np.array_split(np.arange(args.images),
                                                max(1, args.images // settings.batch_size))]
            seconds[mode] = time.perf_counter() - start
            outputs[mode] = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
            totals[mode] += seconds[mode]
        full_worst, cascade_worst = (worst_cases(outputs[m]) for m in ("full", "cascade"))
        differ = sum(full_worst[k] != cascade_worst.get(k) for k in full_worst)
        readings = {m: readings[m] + READINGS_SECONDS[m] for m in readings}
        attacked = {m: int(o["attacked"][(o["epsilon"] > 0) & ~np.isin(
            o["evaluation"], [*WORST_CASES, *SANITY])].sum()) for m, o in outputs.items()}
        print(json.dumps({"scenario": name, "full_s": round(seconds["full"], 1),
                          "cascade_s": round(seconds["cascade"], 1),
                          "ratio": round(seconds["full"] / seconds["cascade"], 2),
                          "attacked_full": attacked["full"],
                          "attacked_cascade": attacked["cascade"],
                          "readings_full_s": round(READINGS_SECONDS["full"], 1),
                          "readings_cascade_s": round(READINGS_SECONDS["cascade"], 1),
                          "worst_case_rows": len(full_worst),
                          "worst_case_rows_differ": differ}))
    beyond = {m: totals[m] - readings[m] for m in totals}
    print(f"paper's readings (every image, both modes): {readings['full']:.0f} s full, "
          f"{readings['cascade']:.0f} s cascade; at most {totals['full'] / readings['cascade']:.2f}x "
          f"for any cascade; beyond them {beyond['full']:.0f} s full, {beyond['cascade']:.0f} s "
          f"cascade: {beyond['full'] / beyond['cascade']:.2f}x")
    print(f"cascade vs full: {totals['full'] / totals['cascade']:.2f}x cheaper over "
          f"{len(trained)} scenarios ({totals['full']:.0f} s full, {totals['cascade']:.0f} s "
          f"cascade, {args.images} images, preset {args.preset})")


def worst_cases(output: dict) -> dict:
    rows = np.isin(output["evaluation"], WORST_CASES)
    return {(str(e), float(eps), int(i)): bool(c) for e, eps, i, c in zip(
        output["evaluation"][rows], output["epsilon"][rows], output["id"][rows],
        output["correct"][rows])}


if __name__ == "__main__":
    main()
