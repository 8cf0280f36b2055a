"""Training presets: ``paper`` (the paper's settings), ``smoke`` (all five scenarios on a
2-core machine in minutes) and ``study`` (models that learn, in about an hour there). Every
field can be overridden from the command line.

These settings are plain, non-secret values: they go into Tune's param_space and onto disk.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lie_ray.errors import LieRayError

if TYPE_CHECKING:
    from lie_ray.scenarios import Scenario


# --adv-attack: the cipher's backward pass adversarial training's PGD uses (None: the
# transform's default, its true gradient or BPDA; "none": plain autograd). These name how
# training meets the cipher, not evaluations (lie_ray.attacks.catalogue).
ADV_BPDA, ADV_PLAIN_AUTOGRAD = "bpda", "pgd"
ADV_ATTACKS = {ADV_BPDA: None, ADV_PLAIN_AUTOGRAD: "none"}
TRIAL_DRIVER_CPUS = 0.25  # the Tune trial only builds pipelines and waits on its trainer
DATA_CPUS_PER_TRIAL = 1  # Ray Data's budget per CPU trial's pipeline (augment, encrypt)
# Per GPU worker: an H100 trains the paper's ResNet18 at ~25-30k images/s in bfloat16, and one
# CPU augments and encrypts ~24k (bench/ingest.py), so two keep it fed.
DATA_CPUS_PER_GPU = 2


def data_cpus(workers: int, use_gpu: bool) -> float:
    """Ray Data's CPU budget for one trial's pipelines."""
    return DATA_CPUS_PER_GPU * workers if use_gpu else DATA_CPUS_PER_TRIAL


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 100
    batch_size: int = 128
    lr: float = 0.1
    lr_drop_epoch: int = 40  # lr becomes lr_after_drop from this epoch on (0-based)
    lr_after_drop: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4  # not stated in the paper; the usual CIFAR ResNet value
    width: int = 64  # ResNet18 base width (64 = the standard network)
    adaptation_channels: int = 32
    block_size: int = 4
    key_batch_size: int = 128  # ids per key group (id-group; per-minibatch outside training)
    num_workers: int = 1  # Ray Train DDP workers per trial
    gpu: str = "auto"  # auto: use GPUs when the cluster has any
    torch_threads: int = 1  # intra-op threads per worker
    compile: bool = False  # torch.compile the network (lie_ray.models.device): for long GPU runs
    pgd_steps: int | None = None  # None: the scenario's own adversarial-training settings
    pgd_step_size: float | None = None
    pgd_eps: float | None = None
    # How adversarial training's PGD meets the cipher, one reading each of the paper's "the
    # same PGD" (ADV_ATTACKS). bpda: true forward, the transform's surrogate backward where it
    # has no gradient (the only reading whose attack has a gradient to follow through LE);
    # pgd: plain autograd through the pipeline as written (zero through LE, ELE and FFX, so
    # only the random start acts).
    adv_attack: str = ADV_BPDA
    train_limit: int | None = None  # use only the first N train images (ids stay stable)
    # The last N train images are the attacker's own (lie_ray.data.cifar.held_out): never
    # trained on, never attacked; the keyless attacks fit, search and leak pairs with them.
    attacker_holdout: int = 512
    test_limit: int | None = None
    max_concurrent_trials: int | None = None  # cap; None: as many as the cluster holds
    seed: int = 0

    def replace(self, **overrides) -> TrainSettings:
        fields = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - fields
        if unknown:
            raise LieRayError(f"unknown training setting(s) {sorted(unknown)}")
        updated = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.num_workers < 1:
            raise LieRayError("epochs, batch size and workers must all be >= 1")
        if self.batch_size % self.num_workers:
            raise LieRayError(
                f"batch size {self.batch_size} must divide evenly over {self.num_workers} workers"
            )
        from lie_ray.infra.session import check_gpu_choice  # imports Ray: not for --help

        check_gpu_choice(self.gpu)
        if self.adv_attack not in ADV_ATTACKS:
            raise LieRayError(
                f"unknown adversarial-training attack {self.adv_attack!r}: pass "
                f"--adv-attack {' or '.join(ADV_ATTACKS)}"
            )
        if not (0 < self.lr < math.inf and 0 < self.lr_after_drop < math.inf):  # NaN fails too
            raise LieRayError(
                f"learning rates must be positive and finite, got lr {self.lr} "
                f"and lr_after_drop {self.lr_after_drop}: pass --lr > 0, e.g. 0.1"
            )


PRESETS: dict[str, TrainSettings] = {
    # The paper: batch 128, SGD lr 0.1 -> 0.01 after 40 of 100 epochs, PGD eps 0.1 / 0.01 / 20.
    "paper": TrainSettings(),
    # Five scenarios on 2 CPU cores in minutes (the first result a user sees, the whole smoke
    # sweep under 8 minutes on the slower machines of this kind, where 3 epochs took 8.8): a
    # narrow ResNet18, 2 epochs (the second at a fifth of the rate), two trials at a time (one's
    # start-up overlaps the other's training), and single-step PGD
    # with random start for adversarial training (same eps; step 1.25 eps as in Wong, Rice &
    # Kolter, ICLR 2020). One 1-thread worker per trial, so two trials fill the two cores
    # without oversubscribing them (one trial alone trains about as fast with one 2-thread
    # worker as with two 1-thread DDP workers: bench/train.py); pass --workers 2 for DDP.
    "smoke": TrainSettings(
        epochs=2,
        lr=0.05,
        lr_drop_epoch=1,
        lr_after_drop=0.01,
        width=8,
        adaptation_channels=16,
        num_workers=1,
        torch_threads=1,
        gpu="no",
        pgd_steps=1,
        pgd_step_size=0.125,
        max_concurrent_trials=2,
    ),
    # Models that learn, the whole sweep in about an hour on 2 CPU cores (docs/results.md):
    # the smoke network and adversarial training, 20 epochs in batches of 64 (on CPUs a
    # smaller batch costs about the same per image and gives twice the updates), lr 0.05
    # dropped tenfold after 15 epochs.
    "study": TrainSettings(
        epochs=20,
        batch_size=64,
        lr=0.05,
        lr_drop_epoch=15,
        lr_after_drop=0.005,
        width=8,
        adaptation_channels=16,
        num_workers=1,
        torch_threads=1,
        gpu="no",
        pgd_steps=1,
        pgd_step_size=0.125,
        max_concurrent_trials=2,
    ),
}
# The transform family (scenarios.FAMILY_SCENARIOS) at the smoke settings, and the board of
# key-based defences (``lie-ray board``): the family at the study settings.
PRESETS["family"] = PRESETS["smoke"]
PRESETS["board"] = PRESETS["study"]


def get_preset(name: str) -> TrainSettings:
    if name not in PRESETS:
        raise LieRayError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def training_plan(
    preset: str, names: str | None, scenario_file: list | str | None, overrides: dict
) -> tuple[TrainSettings, list[Scenario]]:
    """The settings and scenarios a training job runs: the preset with the user's overrides,
    and the chosen scenarios with the adversarial-training overrides (--pgd-*) applied."""
    from lie_ray.scenarios import select_scenarios

    settings = get_preset(preset).replace(**overrides)
    scenarios = [
        s.with_attack(
            eps=settings.pgd_eps, step_size=settings.pgd_step_size, steps=settings.pgd_steps
        )
        for s in select_scenarios(names, scenario_file, preset)
    ]
    return settings, scenarios
