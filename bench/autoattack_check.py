"""AutoAttack standard, as lie_ray composes it (Croce & Hein's settings), against the same
library's PGD-50 on a Plain checkpoint: per image AutoAttack must never be weaker.

    python bench/autoattack_check.py RUNS/ray/runs/Plain-<run>/checkpoint_... --images 100 \
        --eps 0.0078

Prints the settings as run, both error rates, the images PGD-50 fooled that AutoAttack did not
(must be 0) and the seconds each took. Both are scored as lie_ray scores every attack: 8-bit
images within eps exactly. Minutes on a CPU (APGD-T and FAB-T each run 9 targets x 100
iterations on the images the attacks before them left).
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torchattacks

from lie_ray.attacks.library import PipelineModule, autoattack, autoattack_settings
from lie_ray.attacks.outcome import deployed, effective_epsilon
from lie_ray.data.cifar import DEFAULT_DATA_DIR, load_split
from lie_ray.evaluation.defender import load_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--data", default=str(DEFAULT_DATA_DIR))
    args = parser.parse_args()
    torch.set_num_threads(1)
    model, _ = load_network(args.checkpoint)
    test = load_split(args.data, "test").head(args.images)
    images = torch.from_numpy(test.images).permute(0, 3, 1, 2).float().contiguous() / 255
    labels = torch.from_numpy(test.labels).long()
    module = PipelineModule(model, model)
    with torch.no_grad():
        clean_wrong = model(images).argmax(1) != labels
    fooled, seconds = {}, {}
    attacks = {
        "pgd-50": torchattacks.PGD(
            module, eps=effective_epsilon(args.eps), alpha=args.eps / 4, steps=50, random_start=True
        ),
        "autoattack": autoattack(module, effective_epsilon(args.eps), "standard", 0, 0, seed=0),
    }
    eps = effective_epsilon(args.eps)  # the ball lie_ray's attacks work and are scored in
    for name, attack in attacks.items():
        started = time.perf_counter()
        found = attack(images, labels)
        if isinstance(found, tuple):  # lie_ray's AutoAttack: and which part broke each image
            found = found[0]
        adversarial = deployed(found, images, eps)
        seconds[name] = round(time.perf_counter() - started, 1)
        with torch.no_grad():
            fooled[name] = (model(adversarial).argmax(1) != labels) | clean_wrong
    print(
        json.dumps(
            {
                "autoattack": autoattack_settings("standard", 0, 0),
                "eps": args.eps,
                "images": args.images,
                "clean_error": clean_wrong.float().mean().item(),
                "pgd50_error": fooled["pgd-50"].float().mean().item(),
                "autoattack_error": fooled["autoattack"].float().mean().item(),
                "pgd50_fooled_autoattack_did_not": int(
                    (fooled["pgd-50"] & ~fooled["autoattack"]).sum()
                ),
                "seconds": seconds,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
