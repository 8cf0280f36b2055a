"""The paper's protocol ("we generated adversarial noise by PGD, added the noise to the test
images and then, encrypted them") has more than one reading; two of them here, the third
(``bpda-identity``) with BPDA's surrogates (``lie_ray.attacks.catalogue.bpda``). Each runs once,
as the paper did, on every image in either evaluation mode: they fill Table I.

``pgd``            reading 1: PGD on the plain image through the true cipher with plain
                   autograd (whose gradient is zero through LE: Athalye et al. 2018 call this
                   obfuscated gradients, so only the random start acts). Table I's protocol.
``paper-literal``  reading 2: PGD on the network's own input (the encrypted image, with the
                   defender's key); the noise found, within eps, is added ONCE to the plain
                   image, which is then encrypted and classified.
"""

from __future__ import annotations

import torch

from lie_ray.attacks.catalogue.common import encrypted_pgd
from lie_ray.attacks.outcome import scored
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec

PGD_NAME = "pgd"  # also the run record's key for the PGD budget every PGD attack shares


def pgd(view, batch, eps, settings):
    return through(view.pipeline.classifier(batch.ids, "none"), view, batch, eps, settings)


def paper_literal(view, batch, eps, settings):
    """The noise PGD finds on the encrypted image, added once to the plain image."""
    encrypted, adversarial = encrypted_pgd(view.pipeline, batch, eps, settings)
    noise = torch.clamp(adversarial - encrypted, -eps, eps)
    return scored(view.oracle, batch, torch.clamp(batch.images + noise, 0, 1), eps)


def pgd_budget(settings) -> dict:
    """What every PGD ran with (each attack's restarts: its spec's ``restarts``)."""
    return {
        PGD_NAME: {
            "steps": settings.pgd_steps,
            "restarts": settings.pgd_restarts,
            "best_iterate": True,
            "step_size": "eps / 10",
        }
    }


SPECS = (
    AttackSpec(
        name=PGD_NAME,
        tier="with-key",
        run=pgd,
        cost=pgd_cost,
        role="paper-reading",
        restarts=False,
        cascade_rank=1,
        label=PGD_NAME,
        colour="tab:blue",
        box="white",
        budget=pgd_budget,
        budget_text=lambda settings: (
            f"PGD {settings.pgd_steps} steps of eps / 10, best iterate over "
            f"{settings.pgd_restarts} restart(s)"
        ),
        description="the paper's protocol: PGD with plain autograd through the pipeline as written",
    ),
    AttackSpec(
        name="paper-literal",
        tier="with-key",
        run=paper_literal,
        cost=pgd_cost,
        needs=frozenset({"transform"}),
        role="paper-reading",
        restarts=False,
        cascade_rank=2,
        label="paper-literal",
        colour="tab:cyan",
        box="white",
        description="PGD on the encrypted image, its noise added once to the plain image",
    ),
)
