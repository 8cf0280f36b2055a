"""``--estimate``: what a run will cost, before it is paid.

Two parts, kept apart so each can be checked. ``passes`` counts the work a preset asks for, in
image-passes of the network (a training step, a forward-and-backward of an attack step, a
forward alone), from the settings alone: every epoch, every attack step, restart, EOT key,
Square query and AutoAttack iteration, as if none stopped early (so an upper bound; the
cascade's lower bound counts only what runs on every image). ``probe`` measures what one pass
costs here: a few batches of the preset's own network, timed after a warm-up, repeated so the
spread shows. Device-seconds are their product; wall time divides them over the devices.
What a run adds to bare PyTorch on the same cores (Ray's workers and helpers, the pipelines,
start-up) is not in the probe: ``--calibration`` scales each phase by what an earlier sweep on
this machine measured (``lie_ray.app.calibration``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lie_ray.app import overheads as fixed
from lie_ray.app.calibration import Calibration, scale_of
from lie_ray.app.overheads import Overheads
from lie_ray.attacks import registry
from lie_ray.attacks.spec import WORST_CASE_NAMES, AttackSpec
from lie_ray.evaluation.engine import chosen_specs, offered, sanity_runs, settings_for
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import TrainSettings

KINDS = ("train", "attack", "attack_single", "forward", "forward_single")


@dataclass
class Passes:
    """Image-passes by kind: ``train`` steps, ``attack`` forward-and-backward passes in
    batches, ``attack_single`` those run image by image (the library attacks under a key per
    image), ``forward`` and ``forward_single`` forward passes alone."""

    counts: dict[str, float]

    @classmethod
    def of(cls, **counts: float) -> Passes:
        return cls({kind: float(counts.get(kind, 0)) for kind in KINDS})

    def __add__(self, other: Passes) -> Passes:
        return Passes({k: self.counts[k] + other.counts[k] for k in KINDS})

    def __mul__(self, factor: float) -> Passes:
        return Passes({k: v * factor for k, v in self.counts.items()})

    @property
    def total(self) -> float:
        return sum(self.counts.values())


def attack_passes(spec: AttackSpec, settings: EvalSettings, alone: bool = False) -> Passes:
    """One image, one epsilon: what ``spec`` costs at most (its ``cost``, with the restarts it
    runs with). ``alone``: every image has a key of its own, so the library attacks (one call
    per key) run image by image."""
    return Passes.of(**spec.cost(settings_for(spec, settings), alone))


def keyed_alone(scenario: Scenario) -> bool:
    """Whether every test image has a key of its own (library attacks then run one by one)."""
    return scenario.encrypted and scenario.key_policy == "per-image"


def training_passes(
    scenario: Scenario, settings: TrainSettings, train_images: int, test_images: int
) -> Passes:
    """Every epoch's steps (and adversarial training's PGD steps, ``scenario.steps`` with
    the --pgd-* overrides applied), and its held-out pass."""
    steps = scenario.steps if scenario.adversarial else 0
    return Passes.of(
        train=settings.epochs * train_images,
        attack=settings.epochs * train_images * steps,
        forward=settings.epochs * test_images,
    )


def scenario_attacks(
    scenario: Scenario, settings: EvalSettings, has_plain_model: bool
) -> list[AttackSpec]:
    """The attacks an evaluation runs on ``scenario`` (as the actors will find them)."""
    available = offered(
        scenario.encrypted,
        has_plain_model,
        True,  # the attacker's images: the first train images
        scenario.key_policy,
        scenario.transform,
        scenario.variant,
    )
    return chosen_specs(settings, available)


def evaluation_passes(
    scenario: Scenario,
    settings: EvalSettings,
    test_images: int,
    train_images: int,
    has_plain_model: bool,
) -> tuple[Passes, Passes]:
    """(full mode, the cascade's floor): the floor runs only the paper's readings and what
    runs on every image; everything else may be skipped where broken."""
    specs = scenario_attacks(scenario, settings, has_plain_model)
    attacked = [e for e in settings.epsilons if e > 0]
    full = floor = every_image_passes(specs, settings, test_images, train_images)
    for spec in specs:
        per_image = attack_passes(spec, settings, keyed_alone(scenario)) * (
            test_images * len(attacked)
        )
        full = full + per_image
        if spec.role == "paper-reading":
            floor = floor + per_image
    for spec in repeated_attacks(settings, specs):  # on the images their attack met
        full = full + attack_passes(spec, settings, keyed_alone(scenario)) * test_images
    return full, floor


def repeated_attacks(settings: EvalSettings, specs: list[AttackSpec]) -> list[AttackSpec]:
    """The 2x sanity runs of ``specs``: they run where their attack ran, priced like it."""
    names = {spec.name for spec in specs}
    return [spec for spec, _, _ in sanity_runs(settings, specs) if spec.reference in names]


def every_image_passes(
    specs: list[AttackSpec], settings: EvalSettings, test_images: int, train_images: int
) -> Passes:
    """What an evaluation runs whatever the attacks broke: the clean passes over both splits,
    the sanity runs, and what the attacks prepare: the keyless attacks' bypass and key
    search once per scenario (fitted in a task and handed to every actor), anything else in
    every actor; a 2x run prepares with its own doubled effort, or, where its preparation
    carries on from its attack's (``AttackSpec.carries_on``), adds the difference."""
    passes = Passes.of(forward=test_images + train_images)
    for spec, _, _ in sanity_runs(settings):
        passes = passes + attack_passes(spec, settings) * test_images
    return (
        passes
        + preparation_passes(specs, settings, keyless=False) * settings.actors
        + (preparation_passes(specs, settings, keyless=True))
    )


def preparation_passes(specs: list[AttackSpec], settings: EvalSettings, keyless: bool) -> Passes:
    """What ``specs`` (and their 2x runs) prepare once: the keyless attacks' fits (``keyless``:
    once per scenario, in a task before the pool) or the others' (in every actor)."""
    passes = Passes.of()
    for spec in [*specs, *repeated_attacks(settings, specs)]:
        if spec.prepare_cost is not None and (spec.tier == "keyless") == keyless:
            effort = spec.sanity_settings(settings) if spec.is_sanity else settings
            cost = Passes.of(**spec.prepare_cost(effort))
            if spec.is_sanity and spec.carries_on:
                cost = cost + Passes.of(**spec.prepare_cost(settings)) * -1
            passes = passes + cost
    return passes


@dataclass(frozen=True)
class PassSeconds:
    """Seconds per image-pass of each kind here, and the repeats' relative spread."""

    seconds: dict[str, float]
    spread: float

    def cost(self, passes: Passes) -> float:
        return sum(passes.counts[k] * self.seconds[k] for k in KINDS)


def probe(
    width: int,
    adaptation_channels: int,
    train_batch: int,
    eval_batch: int,
    device: torch.device,
    repeats: int = 3,
    batches: int = 2,
) -> PassSeconds:
    """Time the preset's network (encrypted: the adaptation network in front, the costlier
    model) on random images: a warm-up, then ``repeats`` timings of ``batches`` batches of
    each pass kind; seconds per image from the median, spread from the extremes."""
    from lie_ray.models import build_model

    model = build_model(encrypted=True, width=width, adaptation_channels=adaptation_channels).to(
        device
    )
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

    kinds = {
        "train": (train_step, train_batch),
        "attack": (attack_step, eval_batch),
        "attack_single": (attack_step, 1),
        "forward": (forward, eval_batch),
        "forward_single": (forward, 1),
    }
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
    return max(
        1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    )


def trials_wall(costs: list[float], slots: int) -> float:
    """When the last trial ends: Tune starts them costliest first (``by_expected_cost``), each
    on the first slot to come free, so a lone last trial leaves the other slots idle."""
    free = [0.0] * max(1, slots)
    for cost in sorted(costs, reverse=True):
        free[free.index(min(free))] += cost
    return max(free)


@dataclass(frozen=True)
class Phase:
    name: str
    passes: Passes
    device_seconds: float
    wall_seconds: float


@dataclass(frozen=True)
class Expected:
    """A phase's expected wall time, with what the run adds to bare PyTorch
    (``lie_ray.app.overheads``), and its range (the probe's spread; the evaluation's, from
    the cascade's floor to every attack on every image)."""

    name: str
    seconds: float
    low: float
    high: float

    @classmethod
    def fixed(cls, name: str, seconds: float) -> Expected:
        """A phase of start-ups alone: no probe's spread, so the 25% the estimate holds to."""
        return cls(name, seconds, seconds / 1.25, seconds * 1.25)


@dataclass(frozen=True)
class Estimate:
    """What ``--estimate`` prints, and what a sweep keeps beside its measured times
    (``OUT/timings.json``): per phase the image-passes, device-seconds and wall seconds."""

    phases: list[Phase]
    seconds: PassSeconds
    devices: int
    device_type: str
    scenarios: list[str]
    calibration: Calibration | None = None  # None: bare PyTorch's cost alone
    expected: list[Expected] = field(default_factory=list)
    overheads: Overheads | None = None

    def phase(self, name: str) -> Phase:
        return next(p for p in self.phases if p.name == name)

    def evaluation_range(self) -> tuple[float, float]:
        """The evaluation's wall seconds at least (the cascade's floor; full mode: all of
        it) and at most (every attack on every image)."""
        full = self.phase("evaluation (full)").wall_seconds
        floor = next(
            (
                p.wall_seconds
                for p in self.phases
                if p.name.endswith("floor)") and p.name.startswith("evaluation")
            ),
            full,
        )
        return floor, full

    def table(self) -> str:
        spread = self.seconds.spread
        lines = [
            f"estimate: {', '.join(self.scenarios)} on {self.devices} {self.device_type} "
            f"device(s) of this machine; seconds per image-pass measured here (spread "
            f"{spread:.0%}); image-passes count every step, restart, key, query and "
            "iteration, as if no attack stopped early",
            self.calibration.describe()
            if self.calibration
            else "uncalibrated: the probe's bare PyTorch, without what the cluster's workers, "
            "helpers and pipelines add on the same cores (1.3-1.6x on 2 cores); pass "
            "--calibration OUT, an earlier sweep's folder on this machine, to count it",
            f"{'phase':<28}{'image-passes':>14}{'device-hours':>14}  wall (range)",
        ]
        for p in self.phases:
            lines.append(
                f"{p.name:<28}{p.passes.total:>14.3g}{p.device_seconds / 3600:>14.2f}  "
                f"{duration(p.wall_seconds)} ({duration(p.wall_seconds / (1 + spread))}"
                f" - {duration(p.wall_seconds * (1 + spread))})"
            )
        if self.expected:
            lines.append(self.expected_heading())
            lines += [
                f"{e.name:<28}{duration(e.seconds):>14}  ({duration(e.low)} - {duration(e.high)})"
                for e in self.expected
            ]
        return "\n".join(lines)

    def expected_heading(self) -> str:
        if self.overheads is None:
            return (
                "expected wall per phase (the calibration's ratios hold what the run adds; "
                "the evaluation's range: the cascade's floor to every attack on every image)"
            )
        return (
            "expected wall per phase, with what the run adds to bare PyTorch (start-ups at "
            f"{self.overheads.start:.1f} s each, this machine's probe; the cluster's helper "
            f"processes stretch compute x{self.overheads.helper_factor:.2f}; the evaluation's "
            "range: the cascade's floor to every attack on every image)"
        )

    def expected_seconds(self, name: str) -> float:
        return next(e.seconds for e in self.expected if e.name == name)

    def record(self) -> dict:
        return {
            "devices": self.devices,
            "device_type": self.device_type,
            "seconds_per_pass": self.seconds.seconds,
            "spread": self.seconds.spread,
            "calibration": self.calibration.record() if self.calibration else None,
            "overheads": self.overheads.record() if self.overheads else None,
            "expected": {
                e.name: {"wall_seconds": e.seconds, "low": e.low, "high": e.high}
                for e in self.expected
            },
            "phases": {
                p.name: {
                    "image_passes": p.passes.total,
                    "device_seconds": p.device_seconds,
                    "wall_seconds": p.wall_seconds,
                }
                for p in self.phases
            },
        }


def estimate(
    scenarios: list[Scenario],
    train: TrainSettings | None,
    evaluation: EvalSettings | None,
    data_dir,
    device: torch.device,
    width: int,
    adaptation_channels: int,
    train_batch: int,
    calibration: Calibration | None = None,
    sweep: bool = False,
    privacy_transforms: int = 0,
) -> Estimate:
    """Per phase the image-passes, device-hours and wall time on this machine's devices (the
    wall's range from the probe's spread). Training's wall schedules the trials over the
    slots the run would have; evaluation's divides over its actors. Then each phase's expected
    wall with what the run adds (``lie_ray.app.overheads``, probed here too): ``sweep`` says
    whether the run is a sweep (which also encrypts the train split first and writes the
    report), ``privacy_transforms`` how many transforms its privacy phase attacks (0: none)."""
    torch.set_num_threads(1)  # what each CPU worker and actor runs with
    seconds = probe(
        width,
        adaptation_channels,
        train_batch,
        evaluation.batch_size if evaluation else train_batch,
        device,
    )
    devices = devices_here(device)
    return priced(
        scenarios,
        train,
        evaluation,
        data_dir,
        seconds,
        devices,
        device.type,
        calibration,
        None if calibration else Overheads.here(devices, device.type),
        sweep,
        privacy_transforms,
    )


def priced(
    scenarios: list[Scenario],
    train: TrainSettings | None,
    evaluation: EvalSettings | None,
    data_dir,
    seconds: PassSeconds,
    devices: int,
    device_type: str,
    calibration: Calibration | None = None,
    overheads: Overheads | None = None,
    sweep: bool = False,
    privacy_transforms: int = 0,
) -> Estimate:
    """``estimate`` at given seconds per pass (and start-up): the counts, the schedule, the
    overheads and the calibration, apart from the probes' timing."""
    from lie_ray.data.cifar import load_split

    # Each split read once, for training's part and the evaluation's: a limit keeps the first
    # rows, as load_split(limit=...) does.
    whole_train = load_split(data_dir, "train")
    test_images = len(load_split(data_dir, "test").labels)

    def test_size(limit: int | None) -> int:
        return test_images if limit is None else min(limit, test_images)

    spread = seconds.spread
    phases: list[Phase] = []
    expected: list[Expected] = []
    start = overheads.starts if overheads is not None else (lambda multiple: 0.0)
    if sweep and overheads is not None:
        expected.append(Expected.fixed("encryption", start(fixed.ENCRYPTION_STARTS)))
    if train is not None:
        n_train, n_test = defender_images(whole_train, train), test_size(train.test_limit)
        per_trial = [training_passes(s, train, n_train, n_test) for s in scenarios]
        costs = [seconds.cost(p) * scale_of(calibration, "training") for p in per_trial]
        slots = min(
            train.max_concurrent_trials or devices,
            len(scenarios),
            max(1, devices // max(1, train.num_workers)),
        )
        phases.append(
            Phase("training", sum(per_trial, Passes.of()), sum(costs), trials_wall(costs, slots))
        )
        busy = slots * train.num_workers * train.torch_threads >= devices
        stretch = overheads.helper_factor if overheads is not None and busy else 1.0
        trial = start(fixed.TRIAL_STARTS) + train.epochs * start(fixed.EPOCH_STARTS)
        adversarial = fixed.ADVERSARIAL_STEP - 1 if overheads is not None else 0.0
        computed = [
            cost + adversarial * seconds.seconds["attack"] * p.counts["attack"]
            for cost, p in zip(costs, per_trial)
        ]
        wall = trials_wall([c * stretch + trial for c in computed], slots)
        wall += start(fixed.TRAINING_STARTS)
        expected.append(Expected("training", wall, wall / (1 + spread), wall * (1 + spread)))
    if evaluation is not None:
        n_test, n_train = test_size(evaluation.test_limit), len(whole_train.labels)
        plain = any(not s.encrypted for s in scenarios)
        bounds = [evaluation_passes(s, evaluation, n_test, n_train, plain) for s in scenarios]
        actors = max(1, min(evaluation.actors, devices))
        named = [("evaluation (full)", 0)]
        if evaluation.mode == "cascade":
            named.append(("evaluation (cascade floor)", 1))
        scale = scale_of(calibration, "evaluation")
        for name, which in named:
            passes = sum((b[which] for b in bounds), Passes.of())
            cost = seconds.cost(passes) * scale
            phases.append(Phase(name, passes, cost, cost / actors))
        expected.append(
            evaluation_expected(
                scenarios, evaluation, bounds, seconds, devices, actors, scale, overheads, plain
            )
        )
    if privacy_transforms and overheads is not None:
        privacy = privacy_transforms * start(fixed.PRIVACY_STARTS_PER_TRANSFORM)
        expected.append(Expected.fixed("privacy", privacy))
    if sweep and overheads is not None:
        expected.append(Expected.fixed("report", start(fixed.REPORT_STARTS)))
    if expected:
        expected.append(
            Expected(
                "total",
                sum(e.seconds for e in expected),
                sum(e.low for e in expected),
                sum(e.high for e in expected),
            )
        )
    upper = [p for p in phases if "floor" not in p.name]

    def total(chosen, name):
        return Phase(
            name,
            sum((p.passes for p in chosen), Passes.of()),
            sum(p.device_seconds for p in chosen),
            sum(p.wall_seconds for p in chosen),
        )

    rows = phases + [total(upper, "total")]
    if any("floor" in p.name for p in phases):
        rows.append(total([p for p in phases if "full" not in p.name], "total (cascade floor)"))
    return Estimate(
        rows,
        seconds,
        devices,
        device_type,
        [s.name for s in scenarios],
        calibration,
        expected,
        overheads,
    )


def defender_images(whole_train, train: TrainSettings) -> int:
    """The train images a trial trains on: the split less the attacker's held-out part."""
    from lie_ray.data.cifar import defender_part

    return len(defender_part(whole_train, train.attacker_holdout, train.train_limit).labels)


def evaluation_expected(
    scenarios: list[Scenario],
    settings: EvalSettings,
    bounds: list[tuple[Passes, Passes]],
    seconds: PassSeconds,
    devices: int,
    actors: int,
    scale: float,
    overheads: Overheads | None,
    plain: bool,
) -> Expected:
    """The evaluation's expected wall: the keyless fits, one task per scenario side by side
    before the pool; then the pool's work over its actors (the cascade's expected share of
    what lies above its floor; its range, the floor to all of it); and its fixed costs."""
    fits = [
        seconds.cost(
            preparation_passes(scenario_attacks(s, settings, plain), settings, keyless=True)
        )
        * scale
        for s in scenarios
    ]
    stretch = overheads.helper_factor if overheads is not None and actors >= devices else 1.0
    task = overheads.starts(fixed.FIT_TASK_STARTS) if overheads is not None else 0.0
    fit_wall = trials_wall(
        [fit * stretch + task for fit in fits if fit > 0],
        max(1, devices // max(1, settings.torch_threads)),
    )
    full, floor = (
        (seconds.cost(sum((b[i] for b in bounds), Passes.of())) * scale - sum(fits))
        * stretch
        / actors
        for i in (0, 1)
    )
    share = fixed.CASCADE_SHARE if settings.mode == "cascade" else 1.0
    lowest = floor if settings.mode == "cascade" else full
    base = fit_wall + (overheads.starts(fixed.EVALUATION_STARTS) if overheads else 0.0)
    middle = base + lowest + share * (full - lowest)
    spread = 1 + seconds.spread
    return Expected("evaluation", middle, (base + lowest) / spread, (base + full) * spread)


def for_run(
    scenarios: list[Scenario],
    train: TrainSettings | None,
    evaluation: EvalSettings | None,
    data_dir,
    network: dict | None = None,
    calibration: Calibration | None = None,
    sweep: bool = False,
    privacy_transforms: int = 0,
) -> Estimate:
    """The estimate of a run of these settings, on the device it would use here.
    ``network``: the trained network's shape (evaluate), else the training settings'."""
    if network is None:
        network = {
            "width": train.width,
            "adaptation_channels": train.adaptation_channels,
            "batch_size": train.batch_size,
        }
    gpu = torch.cuda.is_available() and (train is None or train.gpu != "no")
    return estimate(
        scenarios,
        train,
        evaluation,
        data_dir,
        torch.device("cuda" if gpu else "cpu"),
        network["width"],
        network["adaptation_channels"],
        network["batch_size"],
        calibration,
        sweep,
        privacy_transforms,
    )


def work_done(
    examples,
    evaluation: EvalSettings,
    scenarios: list[Scenario],
    test_images: int,
    train_images: int,
    seconds: PassSeconds,
    scale: float = 1.0,
) -> float:
    """Device-seconds of the evaluation a run did, by the same cost model: every attack's
    passes on the images it was given (``attacked``, so the cascade's skipped images cost
    nothing, less the ``reused`` rows, which were handed an earlier run's outcome), with the
    sanity runs and PBA's fits as ``evaluation_passes`` counts them; ``scale``: the
    prediction's calibration. Tables written before ``reused`` existed count every row."""
    import pyarrow.compute as pc

    ran = examples["attacked"]
    if "reused" in examples.column_names:
        ran = pc.and_(ran, pc.invert(pc.fill_null(examples["reused"], False)))
    attacked = examples.filter(pc.and_(pc.greater(examples["epsilon"], 0), ran))
    counts = attacked.group_by(["scenario", "evaluation"]).aggregate([([], "count_all")])
    known = {s.name: s for s in scenarios}
    elsewhere = {*WORST_CASE_NAMES, *(s.name for s in registry.sanity_runs())}
    chosen = registry.chosen(evaluation.attacks)
    repeats = {s.name: s for s, _, _ in sanity_runs(evaluation, chosen) if s.reference}
    passes = Passes.of()
    for row in counts.to_pylist():
        if row["evaluation"] in elsewhere or row["scenario"] not in known:
            continue  # no attack ran for a worst case; the sanity runs are counted below
        spec = repeats.get(row["evaluation"]) or registry.spec(row["evaluation"])
        passes = (
            passes
            + attack_passes(spec, evaluation, keyed_alone(known[row["scenario"]]))
            * row["count_all"]
        )
    plain = any(not s.encrypted for s in scenarios)
    for scenario in scenarios:
        specs = scenario_attacks(scenario, evaluation, plain)
        passes = passes + every_image_passes(specs, evaluation, test_images, train_images)
    return seconds.cost(passes) * scale


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
