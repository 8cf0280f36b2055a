"""Attack a scenario lie_ray trained with other libraries' attacks, on ``lie_ray.load``'s module:

    python examples/attack_a_trained_model.py RUN_DIR [--scenario Encrypted] [--images 100]
        [--eps 0.0314]

``RUN_DIR`` is a sweep's --out (or a ``lie-ray evaluate`` --out beside its --runs, given as
--runs). The module takes plain images and holds the transform with its key, so torchattacks'
PGD and AutoAttack attack it as any model: torchattacks' own ``AutoAttack(version="standard")``
(whose APGD and FAB keep torchattacks' default 10 iterations) and the same four attacks at Croce
& Hein's settings (100 iterations, 9 targets, 5,000 queries), as lie_ray composes them for its
``autoattack`` evaluation (``lie_ray.attacks.library.autoattack``). Their errors are
printed beside lie_ray's own outcomes on the same images at the same eps (``examples.parquet``).
"""

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import torch
import torchattacks

import lie_ray
from lie_ray.attacks.library import autoattack
from lie_ray.data.cifar import load_split

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run_dir", type=Path)
parser.add_argument("--runs", type=Path, help="the training output (default: RUN_DIR)")
parser.add_argument("--scenario", default="Encrypted")
parser.add_argument("--images", type=int, default=100)
parser.add_argument("--eps", type=float, default=8 / 255)
parser.add_argument(
    "--no-autoattack", action="store_true", help="PGD only (minutes instead of hours on a CPU)"
)
args = parser.parse_args()

model = lie_ray.load(args.runs or args.run_dir, args.scenario)
print(model)
results = pq.read_table(args.run_dir / "results.parquet")
record = json.loads(results.schema.metadata[b"lie_ray.record"])
test = load_split(record["data"]["directory"], "test").head(args.images)
# Contiguous NCHW: a permuted NHWC array keeps channels-last strides, which torchattacks' FAB
# (inside AutoAttack) cannot view as it reshapes its gradient.
images = (torch.from_numpy(test.images).permute(0, 3, 1, 2).float() / 255).contiguous()
labels = torch.from_numpy(test.labels).long()


def error(adversarial: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(adversarial).argmax(1) != labels).float().mean().item()


eps = args.eps
pgd = torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=20, random_start=True)
figures = {"clean": error(images), "torchattacks PGD-20": error(pgd(images, labels))}
if not args.no_autoattack:
    auto = torchattacks.AutoAttack(
        model, norm="Linf", eps=eps, version="standard", n_classes=10, seed=0
    )
    croce_hein = autoattack(model, eps, "standard", steps=100, queries=5000, seed=0)
    adversarial, broken_by = croce_hein(images, labels)  # and which of its parts broke each
    figures["torchattacks AutoAttack (standard)"] = error(auto(images, labels))
    figures["AutoAttack, Croce & Hein's settings"] = error(adversarial)
# lie_ray's own outcomes for the same images, from examples.parquet: the readings and checks
# that ran on every image (a cascaded attack ran only on the images left to it).
examples = pq.read_table(args.run_dir / "examples.parquet").to_pandas()
mine = examples[
    (examples.scenario == args.scenario)
    & (examples.id < args.images)
    & ((examples.epsilon - eps).abs() < 1e-9)
    & examples.attacked
]
print(f"{args.scenario}, eps {eps:.4f}, first {args.images} test images")
for name, value in figures.items():
    print(f"  {name:<36} {value:.3f}")
for name in ("pgd", "bpda-identity", "sanity-pgd", "worst-case-keyless", "worst-case"):
    rows = mine[mine.evaluation == name]
    if len(rows) == args.images:
        print(f"  lie_ray {name:<28} {1 - rows.correct.mean():.3f}")
