"""BPDA (Athalye, Carlini & Wagner, ICML 2018): the true cipher forward, a differentiable
surrogate backward. The key holder's attack where the transform has no useful gradient.

``bpda-identity``  reading 3 of the paper's protocol: the identity as the cipher's backward (the
                   gradient at the encrypted image applied to the plain one; what the
                   authors' later key-defence code did). Runs once, on every image.
``bpda``           per example the worst of PGD with each surrogate backward: identity, high
                   nibble, both nibbles; the identity run is ``bpda-identity``'s, reused.
"""

from __future__ import annotations

import dataclasses

from lie_ray.attacks import seeding
from lie_ray.attacks.outcome import worst_of
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec

IDENTITY = "bpda-identity"


def bpda_identity(view, batch, eps, settings):
    return through(view.pipeline.classifier(batch.ids, "identity"), view, batch, eps, settings)


def bpda(view, batch, eps, settings):
    """The worst over surrogates; reuses this batch's ``bpda-identity`` when it already ran.
    Each surrogate's PGD draws its own random starts (``seeding.salted``)."""
    outcomes = [view.earlier.get(IDENTITY) or bpda_identity(view, batch, eps, settings)]
    outcomes += [
        through(
            view.pipeline.classifier(batch.ids, backward),
            view,
            batch,
            eps,
            dataclasses.replace(
                settings, attacker_seed=seeding.salted(settings.attacker_seed, backward)
            ),
        )
        for backward in ("bpda-high", "bpda-both")
    ]
    return worst_of(outcomes, batch.labels)


def bpda_cost(settings, alone=False):
    """Two more surrogates than ``bpda-identity`` (whose run it reuses)."""
    return {kind: 2 * count for kind, count in pgd_cost(settings).items()}


SPECS = (
    AttackSpec(
        name=IDENTITY,
        tier="with-key",
        run=bpda_identity,
        cost=pgd_cost,
        needs=frozenset({"transform"}),
        role="paper-reading",
        cascade_rank=3,
        label=IDENTITY,
        colour="tab:olive",
        box="white",
        description="PGD with the identity as the cipher's backward",
    ),
    AttackSpec(
        name="bpda",
        tier="with-key",
        run=bpda,
        cost=bpda_cost,
        needs=frozenset({"transform"}),
        cascade_rank=60,
        label="bpda",
        colour="tab:orange",
        box="white",
        description="the worst of PGD with each BPDA surrogate (identity, high nibble, both)",
    ),
)
