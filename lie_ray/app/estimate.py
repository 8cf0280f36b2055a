"""``--estimate``: what a run will cost, before it is paid.

Two parts, kept apart so each can be checked. ``passes`` counts the work a preset asks for, in
image-passes of the network (a training step, a forward-and-backward of an attack step, a
forward alone), from the settings alone: every epoch, every attack step, restart, EOT key,
Square query and AutoAttack iteration, as if none stopped early (so an upper bound; the
cascade's lower bound counts only what runs on every image). ``probe`` measures what one pass
costs here: a few batches of the preset's own network, timed after a warm-up, repeated so the
spread shows. Device-seconds are their product; wall time divides them over the devices.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lie_ray.evaluation.actor import evaluations, key_recoverable
from lie_ray.evaluation.protocols import restarts
from lie_ray.evaluation.settings import PAPER_READINGS, RECOVERED_KEY, EvalSettings
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import TrainSettings

KINDS = ("train", "attack", "attack_single", "forward", "forward_single")


@dataclass
class Passes:
    """Image-passes by kind: ``train`` steps, ``attack`` forward-and-backward passes in
    batches, ``attack_single`` those run image by image (the library attacks), ``forward``
    and ``forward_single`` forward passes alone."""

    counts: dict[str, float]

    @classmethod
    def of(cls, **counts: float) -> "Passes":
        return cls({kind: float(counts.get(kind, 0)) for kind in KINDS})

    def __add__(self, other: "Passes") -> "Passes":
        return Passes({k: self.counts[k] + other.counts[k] for k in KINDS})

    def __mul__(self, factor: float) -> "Passes":
        return Passes({k: v * factor for k, v in self.counts.items()})

    @property
    def total(self) -> float:
        return sum(self.counts.values())


def attack_passes(name: str, settings: EvalSettings) -> Passes:
    """One image, one epsilon: what evaluation ``name`` costs at most."""
    steps = settings.pgd_steps
    pgd = lambda runs: Passes.of(attack=steps * runs, forward=runs + 1)  # + scoring, deployed
    runs = restarts(name, settings)
    if name in ("pgd", "bpda-identity", "transfer", "pba", *RECOVERED_KEY):
        return pgd(runs)
    if name in ("paper-literal", "encrypted-input"):
        return pgd(1)
    if name == "bpda":  # the identity surrogate is bpda-identity's, reused
        return pgd(runs) * 2
    if name == "eot":
        return Passes.of(attack=steps * runs * settings.eot_keys,
                         forward=runs * settings.eot_keys + 1)
    if name == "gradient-free":
        return Passes.of(forward_single=settings.square_queries, forward=1)
    if name == "autoattack":
        from lie_ray.attacks.library import autoattack_settings

        run = autoattack_settings(settings.autoattack, settings.autoattack_steps,
                                  settings.square_queries)
        # APGD-CE, APGD-T per target, FAB-T per target (two gradients a step), then Square.
        gradients = run["apgd_steps"] * (1 + run["targets"]) + 2 * run["fab_steps"] * run[
            "targets"]
        return Passes.of(attack_single=gradients * run["restarts"],
                         forward_single=run["square_queries"], forward=1)
    raise ValueError(f"no cost model for evaluation {name!r}")


def training_passes(scenario: Scenario, settings: TrainSettings, train_images: int,
                    test_images: int) -> Passes:
    """Every epoch's steps (and adversarial training's PGD steps, ``scenario.steps`` with
    the --pgd-* overrides applied), and its held-out pass."""
    steps = scenario.steps if scenario.adversarial else 0
    return Passes.of(train=settings.epochs * train_images,
                     attack=settings.epochs * train_images * steps,
                     forward=settings.epochs * test_images)


def evaluation_passes(scenario: Scenario, settings: EvalSettings, test_images: int,
                      train_images: int, has_plain_model: bool) -> tuple[Passes, Passes]:
    """(full mode, the cascade's floor): the floor runs only the paper's readings and the
    sanity checks on every image; everything else may be skipped where broken."""
    names = evaluations(scenario.encrypted, scenario.encrypted and has_plain_model,
                        scenario.encrypted and key_recoverable(
                            scenario.key_policy, scenario.transform, scenario.variant))
    attacked = [e for e in settings.epsilons if e > 0]
    full = floor = Passes.of(forward=test_images + train_images)
    for name in names:
        per_image = attack_passes(name, settings) * (test_images * len(attacked))
        full = full + per_image
        if name in PAPER_READINGS:
            floor = floor + per_image
    if settings.sanity and attacked:
        white = attack_passes("bpda-identity", settings)
        doubled = attack_passes("bpda-identity", settings.replace(
            pgd_steps=2 * settings.pgd_steps, pgd_restarts=2 * settings.pgd_restarts))
        sanity = (white * 2 + doubled) * test_images
        full, floor = full + sanity, floor + sanity
    if scenario.encrypted:  # PBA's stand-in, fitted in every actor
        fit = Passes.of(attack=settings.pba_steps * settings.attacker_images * settings.actors)
        full, floor = full + fit, floor + fit
    return full, floor


@dataclass(frozen=True)
class PassSeconds:
    """Seconds per image-pass of each kind here, and the repeats' relative spread."""

    seconds: dict[str, float]
    spread: float

    def cost(self, passes: Passes) -> float:
        return sum(passes.counts[k] * self.seconds[k] for k in KINDS)


def probe(width: int, adaptation_channels: int, train_batch: int, eval_batch: int,
          device: torch.device, repeats: int = 3, batches: int = 2) -> PassSeconds:
    """Time the preset's network (encrypted: the adaptation network in front, the costlier
    model) on random images: a warm-up, then ``repeats`` timings of ``batches`` batches of
    each pass kind; seconds per image from the median, spread from the extremes."""
    from lie_ray.models import build_model

    model = build_model(encrypted=True, width=width,
                        adaptation_channels=adaptation_channels).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def train_step(n):
        x = torch.rand(n, 3, 32, 32, device=device)
        y = torch.randint(0, 10, (n,), device=device)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    def attack_step(n):
        x = torch.rand(n, 3, 32, 32, device=device, requires_grad=True)
        loss = F.cross_entropy(model(x), torch.randint(0, 10, (n,), device=device))
        torch.autograd.grad(loss, x)

    def forward(n):
        with torch.no_grad():
            model(torch.rand(n, 3, 32, 32, device=device))

    kinds = {"train": (train_step, train_batch), "attack": (attack_step, eval_batch),
             "attack_single": (attack_step, 1), "forward": (forward, eval_batch),
             "forward_single": (forward, 1)}
    seconds, spreads = {}, []
    for kind, (step, n) in kinds.items():
        model.train(kind == "train")
        step(n)  # warm-up: allocations, kernel choice
        timings, calls = [], batches if n > 1 else 4 * batches  # single images: more calls
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(calls):
                step(n)
            if device.type == "cuda":
                torch.cuda.synchronize()
            timings.append((time.perf_counter() - start) / (n * calls))
        timings.sort()
        seconds[kind] = timings[len(timings) // 2]
        spreads.append(timings[-1] / timings[0] - 1)
    return PassSeconds(seconds, max(spreads))


def devices_here(device: torch.device) -> int:
    """What a local run spreads over: the GPUs, or the cores (one-thread workers/actors)."""
    if device.type == "cuda":
        return torch.cuda.device_count()
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def estimate(scenarios: list[Scenario], train: TrainSettings | None,
             evaluation: EvalSettings | None, data_dir, device: torch.device,
             width: int, adaptation_channels: int, train_batch: int) -> str:
    """The table ``--estimate`` prints: per phase the image-passes, device-hours and wall
    time on this machine's devices, the wall time's range from the probe's spread."""
    from lie_ray.data.cifar import load_split

    torch.set_num_threads(1)  # what each CPU worker and actor runs with
    sizes = lambda split, limit: len(load_split(data_dir, split, limit=limit).labels)
    seconds = probe(width, adaptation_channels, train_batch,
                    evaluation.batch_size if evaluation else train_batch, device)
    phases: list[tuple[str, Passes]] = []
    if train is not None:
        n_train, n_test = sizes("train", train.train_limit), sizes("test", train.test_limit)
        phases.append(("training", sum((training_passes(s, train, n_train, n_test)
                                        for s in scenarios), Passes.of())))
    if evaluation is not None:
        n_test, n_train = sizes("test", evaluation.test_limit), sizes("train", None)
        plain = any(not s.encrypted for s in scenarios)
        bounds = [evaluation_passes(s, evaluation, n_test, n_train, plain) for s in scenarios]
        full = sum((b[0] for b in bounds), Passes.of())
        phases.append(("evaluation (full)", full))
        if evaluation.evaluation == "cascade":
            phases.append(("evaluation (cascade floor)", sum((b[1] for b in bounds),
                                                            Passes.of())))
    devices = devices_here(device)
    rows = [(name, passes, seconds.cost(passes)) for name, passes in phases]
    upper = [r for r in rows if "floor" not in r[0]]
    rows.append(("total", sum((r[1] for r in upper), Passes.of()), sum(r[2] for r in upper)))
    if evaluation is not None and evaluation.evaluation == "cascade":
        floor = [r for r in rows[:-1] if "full" not in r[0]]
        rows.append(("total (cascade floor)", sum((r[1] for r in floor), Passes.of()),
                     sum(r[2] for r in floor)))
    lines = [f"estimate: {', '.join(s.name for s in scenarios)} on {devices} "
             f"{device.type} device(s) of this machine; seconds per image-pass measured here "
             f"(spread {seconds.spread:.0%}); image-passes count every step, restart, key, "
             "query and iteration, as if no attack stopped early",
             f"{'phase':<28}{'image-passes':>14}{'device-hours':>14}  wall (range)"]
    for name, passes, cost in rows:
        wall = cost / devices
        lines.append(f"{name:<28}{passes.total:>14.3g}{cost / 3600:>14.2f}  {duration(wall)} "
                     f"({duration(wall / (1 + seconds.spread))} - "
                     f"{duration(wall * (1 + seconds.spread))})")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
