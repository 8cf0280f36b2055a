"""Transfer (Papernot et al., 2016): PGD against a model trained on plain images, the
adversarial image then encrypted with the defender's key and classified."""

from __future__ import annotations

from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec


def transfer(view, batch, eps, settings):
    return through(view.plain_model, view, batch, eps, settings)


SPECS = (
    AttackSpec(
        name="transfer",
        tier="keyless",
        run=transfer,
        cost=pgd_cost,
        needs=frozenset({"transform", "plain-model"}),
        cascade_rank=20,
        label="transfer",
        colour="tab:red",
        box="black",
        description="PGD against the Plain model, its image then encrypted",
    ),
)
