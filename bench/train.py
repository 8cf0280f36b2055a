"""Training throughput: Ray Train (2 CPU workers, DDP) versus a bare PyTorch loop (2 threads).

    python bench/train.py [--width 8] [--epochs 2] [--data DIR]

Both train the Plain scenario's ResNet18 on the same CIFAR-10 images with the same batch size,
augmentation and optimiser; the first epoch warms up, the last is timed. The Ray figure is
measured inside the workers (epoch time only) and, separately, as the wall time of the whole
fit() including worker start-up. Target: Ray costs no more than 10% per epoch.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import torch
import torch.nn.functional as F
from ray.train.torch import TorchTrainer

from lie_ray.data.cifar import DEFAULT_DATA_DIR, load_split
from lie_ray.models import build_model
from lie_ray.presets import get_preset
from lie_ray.scenarios import PAPER_SCENARIOS
from lie_ray.training.augment import random_crop_flip
from lie_ray.training.pipeline import build_datasets
from lie_ray.training.worker import to_tensors, train_epoch


def bare_loop(args) -> float:
    """Images/s of one epoch in a single process with 2 intra-op threads."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    split = load_split(args.data, "train")
    model = build_model(False, width=args.width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    rng = np.random.default_rng(0)
    rate = 0.0
    for _ in range(args.epochs):
        start, seen = time.perf_counter(), 0
        order = rng.permutation(len(split.labels))
        model.train()
        for first in range(0, len(order), args.batch):
            rows = order[first:first + args.batch]
            batch = {"image": random_crop_flip(split.images[rows], rng),
                     "label": split.labels[rows]}
            images, labels = to_tensors(batch, torch.device("cpu"))
            optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(model(images), labels).backward()
            optimizer.step()
            seen += len(rows)
        rate = seen / (time.perf_counter() - start)
    return rate


def ray_worker(config):
    settings = get_preset("smoke").replace(width=config["width"], batch_size=config["batch"])
    torch.set_num_threads(config["threads"])
    torch.manual_seed(0)
    model = ray.train.torch.prepare_model(build_model(False, width=settings.width))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    shard = ray.train.get_dataset_shard("train")
    per_worker = settings.batch_size // ray.train.get_context().get_world_size()
    rank = ray.train.get_context().get_world_rank()
    for epoch in range(config["epochs"]):
        start = time.perf_counter()
        _, _, seen = train_epoch(model, optimizer, PAPER_SCENARIOS["Plain"], None, shard,
                                 per_worker, torch.device("cpu"))
        elapsed = time.perf_counter() - start
        Path(config["timings"], f"rank{rank}.json").write_text(
            json.dumps({"epoch": epoch, "images": seen, "seconds": elapsed}))
        ray.train.report({"epoch": epoch})


def ray_loop(args) -> tuple[float, float]:
    settings = get_preset("smoke").replace(width=args.width, batch_size=args.batch)
    datasets = build_datasets(PAPER_SCENARIOS["Plain"], settings, args.data, None)
    timings = tempfile.mkdtemp(prefix="lie_ray_bench_")
    start = time.perf_counter()
    TorchTrainer(ray_worker, train_loop_config={"width": args.width, "batch": args.batch,
                                                "epochs": args.epochs, "timings": timings,
                                                "threads": 2 // args.workers},
                 scaling_config=ray.train.ScalingConfig(num_workers=args.workers),
                 datasets={"train": datasets["train"]},
                 run_config=ray.train.RunConfig(storage_path=timings,
                                                name=f"train-{os.getpid()}")).fit()
    wall = time.perf_counter() - start
    last = [json.loads(p.read_text()) for p in Path(timings).glob("rank*.json")]
    return sum(m["images"] for m in last) / max(m["seconds"] for m in last), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA_DIR)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, choices=[1, 2],
                        help="Ray Train workers (threads per worker: 2 / workers)")
    args = parser.parse_args()
    bare = bare_loop(args)
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    distributed, wall = ray_loop(args)
    ray.shutdown()
    print(f"one training epoch, ResNet18 width {args.width}, batch {args.batch}, "
          f"{args.epochs - 1} warm-up epoch(s)")
    print(f"  {'bare PyTorch, 1 process x 2 threads':37s}{bare:9.1f} img/s")
    label = f"Ray Train, {args.workers} worker(s) x {2 // args.workers} thread(s)"
    print(f"  {label:37s}{distributed:9.1f} img/s  "
          f"({100 * (bare / distributed - 1):+.1f}% time vs bare)")
    print(f"  Ray fit() wall time, {args.epochs} epochs incl. start-up: {wall:.1f} s")


if __name__ == "__main__":
    main()
