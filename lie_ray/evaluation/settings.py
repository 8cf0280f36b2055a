"""Evaluation presets: which epsilons, how hard each attack tries, how much data.

Attack step sizes scale with epsilon (step = eps / 10, the paper's 0.01 at 0.1), so curves
over epsilon compare like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lie_ray.errors import LieRayError

PAPER_EPSILON = 0.1
# How the attacks meet the images: 'cascade': each attack only on the images its attacker has
# not broken yet (the same worst cases for a fraction of the attacks; lie_ray.evaluation.
# cascade); 'full': every attack on every image, so every attack's own error is over all.
EVALUATION_MODES = ("full", "cascade")


def headline_epsilon(epsilons) -> float | None:
    """The one rule for the headline epsilon, from the epsilons attacked (0 is no attack):
    the paper's 0.1 when it was attacked, else the largest; None when none was. Epsilons may
    have passed through float32 on the way, hence the tolerance."""
    attacked = [e for e in epsilons if e > 0]
    if any(abs(e - PAPER_EPSILON) <= 1e-6 for e in attacked):
        return PAPER_EPSILON
    return max(attacked, default=None)


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
    attacker_images: int = 384
    pba_steps: int = 300
    key_search_budget: int = 1000  # candidate keys the key search scores (random, then moves)
    # AutoAttack 'rand' (Croce & Hein) for the randomised key policies: APGD-CE and APGD-DLR,
    # each step's gradient the mean over eot_draws fresh attacker keys (the reference: 100
    # iterations, 20 draws).
    rand_steps: int = 100
    rand_draws: int = 20
    mode: str = "full"  # EVALUATION_MODES
    # The attacks to run, by name (lie_ray.attacks.spec); None: every one of lie_ray's own.
    # An attack from outside lie_ray runs only where it is named.
    attacks: tuple[str, ...] | None = None

    def step_size(self, eps: float) -> float:
        return eps / 10

    def headline_epsilon(self) -> float | None:
        return headline_epsilon(self.epsilons)

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
        if min(self.pba_steps, self.key_search_budget, self.rand_steps, self.rand_draws) < 1:
            raise LieRayError(
                "PBA steps, the key search's candidates and AutoAttack rand's steps and "
                "draws must all be >= 1"
            )
        if self.attacks is not None:
            check_attack_names(self.attacks)
        leaked = most_leaked_pairs(self.attacks)
        if self.attacker_images < leaked:
            raise LieRayError(
                f"attacker images must be >= {leaked}: the leaked-pair attacks leak that many "
                f"of them (pass --attacker-images >= {leaked})"
            )
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
        if self.mode not in EVALUATION_MODES:
            raise LieRayError(
                f"--evaluation must be one of {', '.join(EVALUATION_MODES)}, got {self.mode!r}"
            )
        if self.actors < 1 or self.batch_size < 1:
            raise LieRayError("actors and batch size must be >= 1")


EVAL_PRESETS: dict[str, EvalSettings] = {
    "paper": EvalSettings(mode="cascade"),
    # A few minutes on 2 cores: 3 epsilons, 100 test images, every attack at a light budget,
    # in the cascade (models near chance break under the first attacks, so the costly ones
    # meet few images: the same worst cases, and the report's every table, for a fraction of
    # the work), and the keyless attacker's bypass and key search fitted briefly on 64 images
    # of its own (figures these models cannot support at any budget; the study preset is
    # where they are judged).
    "smoke": EvalSettings(
        epsilons=(0.0, 8 / 255, PAPER_EPSILON),
        pgd_steps=10,
        pgd_restarts=1,
        eot_keys=2,
        attacker_images=64,
        pba_steps=25,
        key_search_budget=25,
        rand_steps=5,
        rand_draws=4,
        square_queries=50,
        autoattack="light",
        autoattack_steps=5,
        test_limit=100,
        actors=2,
        batch_size=50,
        mode="cascade",
    ),
    # The study preset's: every test image, every attack in the cascade, the smoke budgets
    # but twice Square's queries and AutoAttack's iterations, and a keyless attacker that
    # fits its bypass on 384 images of its own (judged on 128 more) in 200 steps per variant
    # and scores 300 candidate keys.
    "study": EvalSettings(
        epsilons=(0.0, 8 / 255, PAPER_EPSILON),
        pgd_steps=10,
        pgd_restarts=1,
        eot_keys=2,
        attacker_images=384,
        pba_steps=200,
        key_search_budget=300,
        rand_steps=10,
        rand_draws=5,
        square_queries=100,
        autoattack="light",
        autoattack_steps=10,
        mode="cascade",
        actors=2,
        batch_size=64,
    ),
}


EVAL_PRESETS["family"] = EVAL_PRESETS["smoke"]
EVAL_PRESETS["board"] = EVAL_PRESETS["study"]


def get_eval_preset(name: str) -> EvalSettings:
    if name not in EVAL_PRESETS:
        raise LieRayError(f"unknown preset {name!r}: choose one of {', '.join(EVAL_PRESETS)}")
    return EVAL_PRESETS[name]


def most_leaked_pairs(names: tuple[str, ...] | None) -> int:
    """The most pairs of the attacker's images that the attacks run (``names``; None: lie_ray's
    own) leak. Reads the attack registry, which imports torch: only when settings are checked."""
    from lie_ray.attacks import registry

    return max((spec.leaked_pairs for spec in registry.chosen(names)), default=0)


def check_attack_names(names: tuple[str, ...]) -> None:
    """Every name an attack this process can load (lie_ray's, or an installed plug-in's),
    named once; one line naming the problem otherwise."""
    from lie_ray.attacks import registry

    if not names:
        raise LieRayError("--attacks names no attack: pass comma-separated names, or leave it out")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise LieRayError(f"--attacks lists {', '.join(repeated)} more than once: list each once")
    for name in names:
        if registry.spec(name).is_sanity:
            raise LieRayError(
                f"{name!r} is a sanity run, not an attack: it runs with every evaluation "
                "(turn the sanity runs off in the settings instead)"
            )
