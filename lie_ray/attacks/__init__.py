"""Attacks on the plain image, through whatever classifier (and transform) sits behind it,
and the catalogue of evaluations that use them.

PGD and FGSM are ours (small, and the paper's exact step rule); AutoAttack and the Square
attack come from torchattacks (``lie_ray.attacks.library``). Each evaluation lie_ray runs is
one ``AttackSpec`` (``spec``), declared once in ``lie_ray.attacks.catalogue``; one written
outside lie_ray is registered with ``register`` (this process) or under the
``lie_ray.attacks`` entry points of its own package (every process).

    from lie_ray import attacks
    [(name, attacks.spec(name).tier) for name in attacks.names()]   # each attack's attacker
    attacks.register(AttackSpec(name="wrong-key", tier="keyless", run=..., cost=..., ...))
"""

from lie_ray.attacks.base import Attack, Classifier
from lie_ray.attacks.fgsm import FGSM
from lie_ray.attacks.outcome import (
    Batch,
    Outcome,
    deployed,
    effective_epsilon,
    scored,
    worst_of,
)
from lie_ray.attacks.pgd import PGD
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.registry import names, register, spec
from lie_ray.attacks.spec import NEEDS, TIERS, WORST_CASES, AttackSpec
from lie_ray.attacks.views import Keyless, Leaked, Oracle, WithKey

__all__ = [
    "NEEDS",
    "TIERS",
    "WORST_CASES",
    "Attack",
    "AttackSpec",
    "Batch",
    "Classifier",
    "FGSM",
    "Keyless",
    "Leaked",
    "Oracle",
    "Outcome",
    "PGD",
    "WithKey",
    "deployed",
    "effective_epsilon",
    "names",
    "pgd_cost",
    "register",
    "scored",
    "spec",
    "through",
    "worst_of",
]
