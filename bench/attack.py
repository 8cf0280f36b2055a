"""Attack throughput, and how the distributed evaluation scales with Ray actors.

    python bench/attack.py [--images 256] [--width 8] [--skip-ray]

Prints PGD-20 images/s on a fixed encrypted pipeline (adaptation network + ResNet18, BPDA
backward through the cipher) for lie_ray's ``PGD`` class and for a minimal hand-written PGD
loop on the same model; then images/s of the PGD evaluation run through Ray Data actor pools
of 1 and 2 actors.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lie_ray.attacks import PGD
from lie_ray.evaluation.defender import Defender
from lie_ray.keys import generate_key, save_key
from lie_ray.models import build_model
from lie_ray.policies import FixedPolicy

EPS, STEP, STEPS = 0.1, 0.01, 20


def hand_written_pgd(classifier, images, labels):
    adversarial = (images + torch.empty_like(images).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(classifier(adversarial), labels)
        (grad,) = torch.autograd.grad(loss, adversarial)
        adversarial = adversarial.detach() + STEP * grad.sign()
        adversarial = torch.min(torch.max(adversarial, images - EPS), images + EPS).clamp(0, 1)
    return adversarial


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def single_process(args, defender) -> None:
    torch.set_num_threads(1)
    images = torch.rand(args.images, 3, 32, 32)
    labels = torch.randint(0, 10, (args.images,))
    ids = np.arange(args.images)
    classifier = defender.classifier(ids, "bpda-both")
    ours = timed(lambda: PGD(classifier, EPS, STEP, STEPS)(images, labels))
    hand = timed(lambda: hand_written_pgd(classifier, images, labels))
    print(f"PGD-{STEPS}, {args.images} images, width {args.width}, 1 thread")
    print(f"  lie_ray PGD class        {args.images / ours:8.1f} img/s")
    print(f"  hand-written PGD loop    {args.images / hand:8.1f} img/s   "
          f"(ours takes {100 * (ours / hand - 1):+.1f}% time)")


def ray_scaling(args, defender) -> None:
    import ray
    import ray.data

    from lie_ray.data.cifar import DEFAULT_DATA_DIR, load_split
    from lie_ray.data.dataset import to_ray_dataset
    from lie_ray.evaluation.settings import EvalSettings
    from lie_ray.training.worker import META_FILE, STATE_FILE

    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp, "checkpoint")
        checkpoint.mkdir()
        torch.save({"model": defender.model.state_dict()}, checkpoint / STATE_FILE)
        (checkpoint / META_FILE).write_text(
            '{"model": {"encrypted": true, "width": %d, "block_size": 4, '
            '"adaptation_channels": 16}}' % args.width)
        key_path = save_key(defender.key, Path(tmp, "key.json"))
        split = load_split(os.environ.get("LIE_RAY_DATA", DEFAULT_DATA_DIR), "test").head(
            args.images)
        settings = EvalSettings(epsilons=(EPS,), pgd_steps=STEPS, batch_size=32)
        ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
        print(f"distributed PGD-{STEPS} evaluation (pgd only), {args.images} test images")
        for actors in (1, 2):
            dataset = to_ray_dataset(split, rows_per_block=32).map_batches(
                PgdOnly, fn_constructor_kwargs={
                    "scenario": "Encrypted", "checkpoint": str(checkpoint),
                    "key_path": str(key_path), "key_policy": "fixed", "key_batch_size": 128,
                    "settings": settings},
                compute=ray.data.ActorPoolStrategy(size=actors), batch_size=32,
                batch_format="numpy")
            seconds = timed(lambda: dataset.materialize())
            print(f"  {actors} actor(s)               {args.images / seconds:8.1f} img/s "
                  "(incl. actor start-up)")
        ray.shutdown()


class PgdOnly:
    """EvaluateShard restricted to the paper's protocol, so scaling is measured on one attack."""

    def __init__(self, **kwargs):
        from lie_ray.evaluation.actor import EvaluateShard
        from lie_ray.evaluation.protocols import PROTOCOLS

        self.shard = EvaluateShard(**kwargs)
        self.pgd = PROTOCOLS["pgd"]

    def __call__(self, columns):
        from lie_ray.evaluation.protocols import Batch

        images = torch.from_numpy(np.ascontiguousarray(columns["image"]))
        batch = Batch(images.permute(0, 3, 1, 2).float().div(255).contiguous(),
                      torch.from_numpy(np.asarray(columns["label"])).long(),
                      np.asarray(columns["id"]))
        outcome = self.pgd(self.shard.defender, batch, EPS, self.shard.settings, {})
        return {"id": columns["id"], "adv_pred": outcome.predictions.numpy()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model(True, width=args.width, adaptation_channels=16).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    defender = Defender(model, generate_key(), FixedPolicy())
    single_process(args, defender)
    if not args.skip_ray:
        ray_scaling(args, defender)


if __name__ == "__main__":
    main()
