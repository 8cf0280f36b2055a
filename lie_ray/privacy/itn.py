"""The learned inversion attack (ITN), trained as a Ray Train job.

Threat model: the attacker knows the algorithm, not the key. They encrypt THEIR OWN images,
each under a fresh random key of their own, and train a network mapping encrypted images back
to plain ones; whatever it learns cannot depend on any one key, so it applies to the defender's
images under the defender's unknown key. Design after Ito et al.'s ITN
(``ito-hiroki/learnable_encryption_robustness``): a block-sized, block-strided convolution reads
each M x M block whole, 1x1 convolutions transform it, PixelShuffle lays it back out as an
M x M block; per-pixel transforms (PE) get 1x1 convolutions only. MSE loss.

The attacker's pairs travel to the worker through Ray's object store: they hold the
attacker's images and ciphertexts, never a key.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import time
import uuid
from dataclasses import asdict
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F
from torch import nn

from lie_ray.keys import Key
from lie_ray.privacy import targets
from lie_ray.privacy.scoring import as_unit_nchw
from lie_ray.privacy.settings import ItnSettings
from lie_ray.transforms import transform_class

log = logging.getLogger("lie_ray")
STATE_FILE = "itn.pt"


class Itn(nn.Module):
    """Encrypted image -> plain image, in [0, 1]."""

    def __init__(self, block_size: int, width: int, pixelwise: bool = False):
        super().__init__()
        m = 1 if pixelwise else block_size
        self.body = nn.Sequential(
            nn.Conv2d(3, width, kernel_size=m, stride=m),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.Conv2d(width, width, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(True),
            nn.Conv2d(width, 32 * m * m, 1),
            nn.BatchNorm2d(32 * m * m),
            nn.ReLU(True),
            nn.PixelShuffle(m),
            nn.Conv2d(32, 3, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def attacker_pairs(
    name: str, images: np.ndarray, block_size: int, images_per_key: int = 1, seed: int = 0
) -> np.ndarray:
    """Encrypt the attacker's images under fresh keys of the attacker's own master: one per
    image, or one per ``images_per_key`` images (building a key costs up to ~10 ms: FFX's
    lookup, ELE's per-block tables), so the smoke preset shares each among a few.

    The attacker's master comes from ``seed`` (it guards nothing: the attacker encrypts their
    own images), so a rerun trains on the same pairs. A loop over keys, not pixels: every key
    is a different transform.
    """
    secret = hashlib.sha256(f"lie_ray/privacy/attacker/{seed}".encode()).digest()
    master = Key("master", secret, block_size)
    return np.concatenate(
        [
            as_numpy_unit(
                targets.build(name, master, block_size, f"itn/{start}").encrypt(
                    images[start : start + images_per_key]
                )
            )
            for start in range(0, len(images), images_per_key)
        ]
    )


def as_numpy_unit(images: np.ndarray) -> np.ndarray:
    """NHWC uint8 or float -> float32 NHWC in [0, 1] (FFX ciphertexts are floats already)."""
    return as_unit_nchw(images).permute(0, 2, 3, 1).numpy()


def train_func(config: dict) -> None:
    """The Ray Train worker: one network per transform, in turn; report the loss every epoch
    (prefixed by the transform), checkpoint every network at the end."""
    settings = ItnSettings(**config["settings"])
    torch.set_num_threads(settings.torch_threads)
    states, metrics = {}, {}
    for job in config["jobs"]:  # a handful of transforms: one short training each
        model, mse = train_one(job, settings)
        states[job["transform"]] = (
            model.module if hasattr(model, "module") else model
        ).state_dict()
        metrics[f"{job['transform']}_mse"] = mse
        sys.__stdout__.write(f"itn {job['transform']}: {settings.epochs} epochs, mse {mse:.4f}\n")
    with tempfile.TemporaryDirectory() as directory:
        torch.save(states, Path(directory) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))


def train_one(job: dict, settings: ItnSettings) -> tuple[nn.Module, float]:
    encrypted, plain = ray.get(job["pairs"])
    return fit(
        encrypted,
        plain,
        job["block_size"],
        job["pixelwise"],
        settings,
        prepare=ray.train.torch.prepare_model,
    )


def fit(
    encrypted: np.ndarray,
    plain: np.ndarray,
    block_size: int,
    pixelwise: bool,
    settings: ItnSettings,
    prepare=lambda model: model,
) -> tuple[nn.Module, float]:
    """Train one ITN on (encrypted, plain) float NHWC pairs in [0, 1]; the model and its last
    epoch's mean loss. ``prepare`` wraps the model (Ray Train's DDP on a worker)."""
    torch.manual_seed(settings.seed)
    encrypted, plain = (
        torch.from_numpy(np.array(a)).permute(0, 3, 1, 2).contiguous() for a in (encrypted, plain)
    )
    model = prepare(Itn(block_size, settings.width, pixelwise))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for _ in range(settings.epochs):
        order = torch.randperm(len(encrypted), generator=generator)
        total = 0.0
        for start in range(0, len(order), settings.batch_size):
            batch = order[start : start + settings.batch_size]
            loss = F.mse_loss(model(encrypted[batch]), plain[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
    model.eval()
    return model, total / len(order)


def train_here(
    name: str, attacker_images: np.ndarray, block_size: int, settings: ItnSettings
) -> tuple[Itn, float]:
    """One transform's ITN in this process (``lie_ray.privacy.attack`` without Ray): the
    same pairs and the same training as the Ray Train job's; the model and its seconds."""
    started = time.monotonic()
    model, _ = fit(
        attacker_pairs(name, attacker_images, block_size, settings.images_per_key, settings.seed),
        as_numpy_unit(attacker_images),
        targets.block_size_for(name, block_size),
        transform_class(name).pixelwise,
        settings,
    )
    return model, time.monotonic() - started


def train_itns(
    names: list[str],
    attacker_images: np.ndarray,
    block_size: int,
    settings: ItnSettings,
    storage: str,
) -> tuple[dict[str, Itn], dict]:
    """One Ray Train job training an ITN per transform (one job start-up for them all);
    return the trained models by transform and the job's metrics."""
    from ray.train.torch import TorchTrainer

    started = time.monotonic()
    plain = ray.put(as_numpy_unit(attacker_images))
    jobs = [
        {
            "transform": name,
            "block_size": targets.block_size_for(name, block_size),
            "pixelwise": transform_class(name).pixelwise,
            "pairs": ray.put(
                (
                    attacker_pairs(
                        name, attacker_images, block_size, settings.images_per_key, settings.seed
                    ),
                    ray.get(plain),
                )
            ),
        }
        for name in names
    ]
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"settings": asdict(settings), "jobs": jobs},
        scaling_config=ray.train.ScalingConfig(num_workers=1, use_gpu=False),
        # A fresh name per run: an inversion attack is retrained, never resumed.
        run_config=ray.train.RunConfig(
            name=f"itn-m{block_size}-{uuid.uuid4().hex[:8]}", storage_path=storage
        ),
    )
    result = trainer.fit()
    with result.checkpoint.as_directory() as directory:
        states = torch.load(Path(directory) / STATE_FILE, weights_only=True)
    models = {}
    for name in names:
        models[name] = Itn(
            targets.block_size_for(name, block_size),
            settings.width,
            transform_class(name).pixelwise,
        )
        models[name].load_state_dict(states[name])
        models[name].eval()
    seconds = time.monotonic() - started
    log.info(
        "ITN trained for %s on %d own images in %.1f s",
        ", ".join(names),
        len(attacker_images),
        seconds,
    )
    return models, {**result.metrics, "seconds": seconds}


@torch.no_grad()
def invert(model: Itn, encrypted: np.ndarray) -> np.ndarray:
    """The attack: the defender's encrypted images -> uint8 NHWC reconstructions."""
    out = model(as_unit_nchw(encrypted))
    return (out.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
