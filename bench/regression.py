"""A regression slice: the tables a change that claims "no result changes" must leave equal.

    python bench/regression.py record BEFORE --key KEY [--data DIR]      # on the old code
    python bench/regression.py record AFTER --key KEY --runs BEFORE/sweep  # on the new code
    python bench/regression.py compare BEFORE AFTER    # exit 1 on any difference

``record`` runs, with one fixed key (made once with ``lie-ray keygen``, kept outside the
checkout):

1. the smoke sweep on a slice of the real data (every scenario trained for one epoch of a
   narrow network on two DDP workers; every attack in full mode at eps 0, 8/255 and 0.1, where
   the 8-bit rounding case lives; the privacy phase), as ``python -m lie_ray.sweep``. With
   ``--runs`` (an earlier recording's sweep), the same steps on its trained scenarios instead:
   ``lie-ray evaluate`` with the sweep's evaluation settings and ``lie-ray privacy``. Training
   is not bit-reproducible from run to run (Ray Data hands the DDP workers their rows in a
   different order each time: the same slice trained twice on the same code gave train losses
   2.2844 and 2.3045 for Plain), so a change is judged on the same checkpoints;
2. ``lie-ray evaluate --evaluation cascade`` on the same trained scenarios;
3. ``lie_ray.evaluate`` on a small seeded CNN behind Shuffle and FFX objects and behind LE by
   key file (plain model and attacker images given, so every attack runs), cascaded and full.

``compare`` reads the evaluation's and the privacy attacks' Parquet tables under both folders
(not ``training.parquet``, nor the cluster's samples) and requires the same rows in the same
order, column by column, but for columns that time the run (``seconds``, keys per second...):
every attack's random draws are per image, so a changed figure is a changed result.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
SLICE = [
    *(
        "--epochs 1 --train-limit 512 --test-limit 128 --width 4 --batch-size 64 --workers 2"
    ).split(),
    *("--eval-limit 32 --eval-pgd-steps 3 --eot-keys 2 --square-queries 10 --pba-steps 8").split(),
    *("--attacker-images 32 --actors 2").split(),
]
EPSILONS = "0,0.0313725490196,0.1"  # 8/255 and the paper's 0.1
TIMING = ("seconds", "wall", "elapsed", "time", "per_second", "years")
COMPARED = ("results.parquet", "examples.parquet", "privacy.parquet")


def run(command: list[str]) -> None:
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True, cwd=REPO)


def record(out: Path, key: Path, data: Path, runs: Path | None = None) -> None:
    lie_ray = str(Path(sys.executable).with_name("lie-ray"))
    sweep = out / "sweep"
    evaluation = ["--data", str(data), "--key", str(key), "--preset", "smoke", "--epsilons",
                  EPSILONS, *SLICE[SLICE.index("--eval-limit"):]]  # fmt: skip
    if runs is None:
        run([sys.executable, "-m", "lie_ray.sweep", "--preset", "smoke", "--data", str(data),
             "--out", str(sweep), "--key", str(key), "--epsilons", EPSILONS, *SLICE])  # fmt: skip
        runs = sweep
    else:  # the sweep's evaluation and privacy phases, on the given runs' checkpoints
        run([lie_ray, "evaluate", "--runs", str(runs), "--out", str(sweep), *evaluation])
        run([lie_ray, "privacy", "--preset", "smoke", "--data", str(data), "--key", str(key),
             "--out", str(sweep)])  # fmt: skip
    run([lie_ray, "evaluate", "--runs", str(runs), "--out", str(out / "cascade"), "--data",
         str(data), "--key", str(key), "--preset", "smoke", "--evaluation", "cascade",
         "--epsilons", EPSILONS, *SLICE[SLICE.index("--eval-limit"):]])  # fmt: skip
    api_slice(out / "api", key, data)


def api_slice(out: Path, key: Path, data: Path) -> None:
    import torch
    from torch import nn

    import lie_ray
    from lie_ray import transforms
    from lie_ray.data.cifar import load_split
    from lie_ray.keys import load_key

    out.mkdir(parents=True, exist_ok=True)
    test, own = load_split(data, "test").head(24), load_split(data, "train").head(32)

    def network(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(128, 10),
        ).eval()  # fmt: skip

    master = load_key(key)
    defences = {
        "shuffle": {"transform": transforms.build("shuffle", master)},
        "ffx": {"transform": transforms.build("ffx", master)},
        "le": {"transform": "le", "key": str(key)},
    }
    for name, defence in defences.items():
        for cascade in (True, False):
            result = lie_ray.evaluate(
                network(1), test.images, test.labels, **defence, eps=[8 / 255, 0.1],
                threat="channel", cascade=cascade, plain_model=network(2),
                attacker_images=own.images, pgd_steps=3, eot_keys=2, square_queries=10,
                pba_steps=8, autoattack_steps=2, batch_size=16,
            )  # fmt: skip
            mode = "cascade" if cascade else "full"
            pq.write_table(result.examples, out / f"{name}-{mode}-examples.parquet")
            pq.write_table(result.results, out / f"{name}-{mode}-results.parquet")


def compare(before: Path, after: Path) -> int:
    def tables(root: Path) -> list[str]:
        return sorted(
            str(p.relative_to(root))
            for p in root.rglob("*.parquet")
            if p.name in COMPARED or p.parent.name == "api"
        )

    names, found = tables(before), tables(after)
    problems = [f"only in {before}: {n}" for n in sorted(set(names) - set(found))]
    problems += [f"only in {after}: {n}" for n in sorted(set(found) - set(names))]
    for name in sorted(set(names) & set(found)):
        a, b = pq.read_table(before / name), pq.read_table(after / name)
        columns = [c for c in a.column_names if not any(t in c for t in TIMING)]
        if set(columns) - set(b.column_names) or a.num_rows != b.num_rows:
            problems.append(f"{name}: columns or rows differ ({a.num_rows} vs {b.num_rows})")
            continue
        for column in columns:
            x, y = (
                a[column].to_numpy(zero_copy_only=False),
                b[column].to_numpy(zero_copy_only=False),
            )
            same = (np.array_equal(x, y, equal_nan=True) if x.dtype.kind == "f"
                    else list(map(repr, x)) == list(map(repr, y)))  # fmt: skip
            if not same:
                problems.append(f"{name}: column {column!r} differs")
        print(f"{name}: {a.num_rows} rows, {len(columns)} columns compared")
    print("\n".join(problems) or f"identical: {len(names)} tables")
    return 1 if problems else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    recording = commands.add_parser("record")
    recording.add_argument("out", type=Path)
    recording.add_argument("--key", type=Path, required=True)
    recording.add_argument(
        "--data", type=Path, default=REPO.parent / "shared/data/cifar-10-batches-py"
    )
    recording.add_argument("--runs", type=Path, help="an earlier recording's sweep folder")
    comparing = commands.add_parser("compare")
    comparing.add_argument("before", type=Path)
    comparing.add_argument("after", type=Path)
    args = parser.parse_args()
    if args.command == "record":
        runs = args.runs.resolve() if args.runs else None
        record(args.out.resolve(), args.key.resolve(), args.data.resolve(), runs)
        return 0
    return compare(args.before, args.after)


if __name__ == "__main__":
    sys.exit(main())
