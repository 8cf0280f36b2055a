"""How far the keyless attacker's bypass gets on one trained model with many more steps than a
preset gives it, and how near the true key an agreement of 0.9 lies.

    python bench/bypass_curve.py RUN SCENARIO [--key RUN/keys/master.json] [--steps 1600]

RUN is a sweep's or ``lie-ray train``'s output folder (its ``training.parquet`` names the
checkpoint); SCENARIO a fixed-key scenario of it. The attacker's images are the ones an
evaluation gives it: the last ``--holdout`` train images, of which it fits on the first
``--images`` and is judged on the rest. Two parts:

1. The bypass as ``pba`` fits it (the transform's own stand-in, ``lie_ray.attacks.bypass``, to
   the pipeline's output probabilities), but with a cosine learning-rate schedule over
   ``--steps`` steps; at checkpoints, its held-out agreement with the pipeline and accuracy
   (attacker-side), then the cosine of its input gradient with the key holder's and the share
   of the key read off it (scored with the true key, which never feeds the fit).
2. The bar any relaxation must clear: the true key with k of its entries swapped, and the
   pipeline's agreement with the network through it on the attacker's images. Where a single
   swapped pair already costs a tenth of the agreement, 0.9 means finding the key itself.

Uses the true key only to score (part 1) and to build the near keys of part 2, which describe
the target, not an attack.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from lie_ray.attacks import bypass, key_search
from lie_ray.data.cifar import held_out, load_split
from lie_ray.evaluation.defender import load_defender
from lie_ray.models.device import images_to_device
from lie_ray.transforms import from_arrays

CHECKPOINTS = (200, 400, 800, 1600, 3200, 6400)
SWAPS = (1, 2, 4, 8, 16, 32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("scenario")
    parser.add_argument("--key", type=Path, help="master key (default RUN/keys/master.json)")
    parser.add_argument("--data", default="../shared/data/cifar-10-batches-py")
    parser.add_argument("--steps", type=int, default=1600)
    parser.add_argument("--lr", type=float, default=bypass.FIT_LR)
    parser.add_argument("--holdout", type=int, default=512)
    parser.add_argument("--images", type=int, default=384)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = {r["scenario"]: r for r in pq.read_table(args.run / "training.parquet").to_pylist()}
    defender = load_defender(
        rows[args.scenario]["checkpoint"], args.key or args.run / "keys" / "master.json"
    )
    network = defender.model.eval().requires_grad_(False)
    _, own = held_out(load_split(args.data, "train"), args.holdout)
    images = images_to_device(own.images, torch.device("cpu"))
    fit, judge = images[: args.images], images[args.images :]
    judge_labels = torch.from_numpy(own.labels[args.images :]).long()
    with torch.no_grad():
        probabilities = F.softmax(network(defender.encrypt(fit, np.arange(len(fit)))), 1)
        answers = network(defender.encrypt(judge, np.arange(len(judge)))).argmax(1)
    true = defender.key.transform()
    print(
        f"{args.scenario} ({true.name}, block {true.block_size}): pipeline accuracy "
        f"{(answers == judge_labels).float().mean():.3f} on {len(judge)} held-out images; "
        f"fitting on {len(fit)}"
    )
    fit_curve(network, true, defender.key.spec, fit, probabilities, judge, answers, args)
    near_keys(network, true, judge, answers)


def fit_curve(network, true, spec, fit, probabilities, judge, answers, args) -> None:
    """One fit (``bypass.Fitting``, with its rate annealed over ``--steps``), carried on from
    checkpoint to checkpoint and read at each."""
    fitting = bypass.Fitting(
        bypass.stand_in_for(spec), probabilities, lr=args.lr, schedule_steps=args.steps
    )
    start = time.perf_counter()
    for step in sorted({*(c for c in CHECKPOINTS if c < args.steps), args.steps}):
        stand_in = fitting.advance(network, fit, step).stand_in
        read = stand_in.read_key()
        share = key_search.key_share(read, true.key_arrays()) if read else float("nan")
        agreement = bypass.agreement(network, stand_in, judge, answers)
        cosine = bypass.gradient_cosine(network, stand_in, true, judge[:64], answers[:64])
        print(
            f"  bypass step {step:5d}: fit loss {fitting.loss:.3f}, held-out agreement "
            f"{agreement:.3f}, gradient cosine {cosine:+.3f}, key share {share:.3f} "
            f"({time.perf_counter() - start:.0f} s)",
            flush=True,
        )


def near_keys(network, true, judge, answers) -> None:
    """The true key with k random pairs of a permutation field swapped (4 draws each)."""
    arrays = true.key_arrays()
    name = next(n for n, v in arrays.items() if np.ndim(v) and np.asarray(v).dtype.kind in "iu")
    rng = np.random.default_rng(0)
    for swaps in SWAPS:
        agreements, shares = [], []
        for _ in range(4):
            rows = np.array(arrays[name]).reshape(-1, np.shape(arrays[name])[-1]).copy()
            for _ in range(swaps):
                row, (a, b) = rng.integers(len(rows)), rng.choice(rows.shape[1], 2, replace=False)
                rows[row, [a, b]] = rows[row, [b, a]]
            near = {**arrays, name: rows.reshape(np.shape(arrays[name]))}
            transform = from_arrays(true.name, near, true.block_size, true.variant)
            with torch.no_grad():
                ours = network(transform.with_grad(judge)).argmax(1)
            agreements.append((ours == answers).float().mean().item())
            shares.append(key_search.key_share(near, arrays))
        print(
            f"  true key, {swaps:2d} pairs of {name!r} swapped: key share {np.mean(shares):.3f}, "
            f"agreement {np.mean(agreements):.3f} (lowest {min(agreements):.3f})"
        )


if __name__ == "__main__":
    main()
