"""Evaluation presets: which epsilons, how hard each attack tries, how much data.

Attack step sizes scale with epsilon (step = eps / 10, the paper's 0.01 at 0.1), so curves
over epsilon compare like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lie_ray.errors import LieRayError

PAPER_EPSILON = 0.1
# Two threat models. PLAIN_SPACE attackers perturb the plain image within eps before it is
# encrypted (the paper's); CHANNEL attackers edit the encrypted image in transit, with eps
# measured in ciphertext space, which is a different (not a stronger or weaker) attacker.
# The strongest known attacks on key-based defences: the parametric bypass (PBA) and a
# white-box attack with the key recovered from k leaked (plain, encrypted) pairs.
RECOVERED_K = (1, 2, 4)
RECOVERED_KEY = tuple(f"recovered-key-{k}" for k in RECOVERED_K)
PLAIN_SPACE = (
    "pgd",
    "paper-literal",
    "bpda-identity",
    "bpda",
    "eot",
    "transfer",
    "gradient-free",
    "autoattack",
    "pba",
    *RECOVERED_KEY,
)
CHANNEL = ("encrypted-input",)
EVALUATIONS = PLAIN_SPACE + CHANNEL
# What an attacker without the defender's key can run: it knows the network's weights and the
# transform, draws keys of its own (EOT), attacks a plain model (transfer) or only queries the
# deployed pipeline (gradient-free), fits a stand-in for the transform (pba) or recovers the
# key from leaked pairs (recovered-key-k). On a scenario without a key every attack is keyless.
KEYLESS = ("eot", "transfer", "gradient-free", "pba", *RECOVERED_KEY)
# Per image, the clean outcome first, then the union over one attacker's evaluations:
WORST_CASE_KEYLESS = "worst-case-keyless"  # KEYLESS: the headline of a key-based defence
WORST_CASE = "worst-case"  # PLAIN_SPACE: an attacker who also holds the key
WORST_CASE_CHANNEL = "worst-case-channel"  # PLAIN_SPACE + CHANNEL
WORST_CASES = (WORST_CASE_KEYLESS, WORST_CASE, WORST_CASE_CHANNEL)
# The paper's readings of its protocol (lie_ray.evaluation.protocols): Table I's, so they run
# on every image in either evaluation mode.
PAPER_READINGS = ("pgd", "paper-literal", "bpda-identity")
# The cascade runs every other attack cheapest first (per attacker: lie_ray.evaluation.cascade):
# a PGD run (the recovered keys, transfer, PBA), then EOT (a PGD over several keys per step),
# Square's queries, BPDA's two more surrogates, AutoAttack; ciphertext-space PGD last. Among
# the PGD runs of one cost, the likeliest to break an image goes first, so fewer images are
# left to the others: where one leaked pair reveals the key, recovered-key-1 is the white-box
# attack (on the study's Encrypted it broke 35 of the 40 images it met, transfer 4 of 45).
CASCADE_ORDER = (
    *RECOVERED_KEY,
    "transfer",
    "pba",
    "eot",
    "gradient-free",
    "bpda",
    "autoattack",
    "encrypted-input",
)
EVALUATION_MODES = ("full", "cascade")
# The paper's own readings of its protocol run once, as the paper did; every adaptive PGD
# (BPDA, EOT, transfer) takes ``pgd_restarts`` random restarts.
SINGLE_RUN = ("pgd", "paper-literal")
# Carlini et al.'s (2019) checks need three more runs of the white-box PGD (the key, and the
# transform's own backward): unbounded (eps 1), and at the headline epsilon once as set and
# once with twice the steps and restarts. Their rows are not attacks to report: the report's
# sanity section reads them, and no worst case takes them.
SANITY_PREFIX = "sanity-"
SANITY_UNBOUNDED, SANITY_PGD, SANITY_PGD_2X = (
    f"{SANITY_PREFIX}{n}" for n in ("unbounded", "pgd", "pgd-2x")
)
SANITY = (SANITY_UNBOUNDED, SANITY_PGD, SANITY_PGD_2X)


def is_sanity_check(evaluation: str) -> bool:
    """A sanity check's run, not an attack to report or take a worst case over."""
    return evaluation.startswith(SANITY_PREFIX)


AUTOATTACK_VERSIONS = ("standard", "light")


@dataclass(frozen=True)
class EvalSettings:
    epsilons: tuple[float, ...] = (0.0, 2 / 255, 4 / 255, 8 / 255, 16 / 255, PAPER_EPSILON)
    pgd_steps: int = 20
    pgd_restarts: int = 5  # of every adaptive PGD (not the paper's own readings)
    eot_keys: int = 10  # random keys the keyless attacker averages gradients over
    square_queries: int = 1000
    # AutoAttack 'standard' as Croce & Hein define it (APGD-CE and APGD-T, FAB-T over 9 target
    # classes, 100 iterations each; Square with 5000 queries), or 'light': the same four with
    # autoattack_steps iterations, one target class and square_queries queries.
    autoattack: str = "standard"
    autoattack_steps: int = 10
    test_limit: int | None = None  # first N test images (ids stay stable)
    actors: int = 2
    batch_size: int = 128
    torch_threads: int = 1
    compile: bool = False  # torch.compile each actor's networks (lie_ray.models.device)
    attacker_seed: int = 1234  # EOT keys and random starts: reproducible, never the defender's
    sanity: bool = True  # the sanity checks' three white-box PGD runs (SANITY)
    # The attacker's own images (the first of the TRAIN split, never attacked): PBA fits its
    # stand-in on them, in pba_steps Adam steps; the recovered-key attacks leak k of them.
    attacker_images: int = 512
    pba_steps: int = 300
    # 'cascade': each attack only on the images its attacker has not broken yet (the same
    # worst cases for a fraction of the attacks; lie_ray.evaluation.cascade); 'full': every
    # attack on every image, so every attack's own error is over the whole test set.
    evaluation: str = "full"

    def step_size(self, eps: float) -> float:
        return eps / 10

    def headline_epsilon(self) -> float | None:
        """The paper's 0.1 when evaluated, else the largest epsilon (the report's choice)."""
        attacked = [e for e in self.epsilons if e > 0]
        if any(abs(e - PAPER_EPSILON) < 1e-9 for e in attacked):
            return PAPER_EPSILON
        return max(attacked, default=None)

    def replace(self, **overrides) -> EvalSettings:
        updated = dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})
        updated.validate()
        return updated

    def validate(self) -> None:
        if not self.epsilons:
            raise LieRayError(
                "--epsilons names no value: pass comma-separated epsilons in "
                "[0, 1], e.g. 0,0.031,0.1, or leave it out for the preset's"
            )
        if any(not 0 <= e <= 1 for e in self.epsilons):  # NaN fails the comparison too
            raise LieRayError(
                f"epsilons must lie in [0, 1], got {self.epsilons}: pass "
                "--epsilons in that range, e.g. 0,0.031,0.1"
            )
        repeated = sorted({e for e in self.epsilons if self.epsilons.count(e) > 1})
        if repeated:  # each epsilon's rows would be counted twice in the error rates
            raise LieRayError(
                f"--epsilons lists {', '.join(map(str, repeated))} more than "
                "once: list each epsilon once"
            )
        if min(self.attacker_images, self.pba_steps) < RECOVERED_K[-1]:
            raise LieRayError(f"attacker images and PBA steps must be >= {RECOVERED_K[-1]}")
        if min(self.pgd_steps, self.pgd_restarts, self.eot_keys, self.square_queries) < 1:
            raise LieRayError(
                "PGD steps and restarts, EOT keys and Square queries must all be >= 1"
            )
        if self.autoattack not in AUTOATTACK_VERSIONS:
            raise LieRayError(
                f"AutoAttack version must be one of {AUTOATTACK_VERSIONS}, got {self.autoattack!r}"
            )
        if self.autoattack_steps < 1:
            raise LieRayError("AutoAttack steps must be >= 1")
        if self.evaluation not in EVALUATION_MODES:
            raise LieRayError(
                f"--evaluation must be one of {', '.join(EVALUATION_MODES)}, got "
                f"{self.evaluation!r}"
            )
        if self.actors < 1 or self.batch_size < 1:
            raise LieRayError("actors and batch size must be >= 1")


EVAL_PRESETS: dict[str, EvalSettings] = {
    "paper": EvalSettings(evaluation="cascade"),
    # A few minutes on 2 cores: 3 epsilons, 100 test images, lighter attacks.
    "smoke": EvalSettings(
        epsilons=(0.0, 8 / 255, PAPER_EPSILON),
        pgd_steps=10,
        pgd_restarts=1,
        eot_keys=2,
        attacker_images=128,
        pba_steps=60,
        square_queries=50,
        autoattack="light",
        autoattack_steps=5,
        test_limit=100,
        actors=2,
        batch_size=50,
    ),
    # The study preset's: every test image, every attack in the cascade, the smoke budgets
    # but twice Square's queries and AutoAttack's iterations.
    "study": EvalSettings(
        epsilons=(0.0, 8 / 255, PAPER_EPSILON),
        pgd_steps=10,
        pgd_restarts=1,
        eot_keys=2,
        attacker_images=128,
        pba_steps=60,
        square_queries=100,
        autoattack="light",
        autoattack_steps=10,
        evaluation="cascade",
        actors=2,
        batch_size=64,
    ),
}


EVAL_PRESETS["family"] = EVAL_PRESETS["smoke"]


def get_eval_preset(name: str) -> EvalSettings:
    if name not in EVAL_PRESETS:
        raise LieRayError(f"unknown preset {name!r}: choose one of {', '.join(EVAL_PRESETS)}")
    return EVAL_PRESETS[name]
