"""Square (Andriushchenko et al., ECCV 2020), torchattacks' implementation: a gradient-free
attack on the deployed pipeline's scores, which any user of it can query."""

from __future__ import annotations

import dataclasses

from lie_ray.attacks.catalogue.common import library_attack
from lie_ray.attacks.library import square
from lie_ray.attacks.spec import AttackSpec

NAME = "gradient-free"


def gradient_free(view, batch, eps, settings):
    """Square attack through the oracle: scores only."""
    return library_attack(
        view,
        view.oracle.single_key,
        batch,
        eps,
        lambda module: square(module, eps, settings.square_queries, settings.attacker_seed),
    )


def square_cost(settings, alone=False):
    queries = "forward_single" if alone else "forward"
    if queries == "forward":
        return {"forward": settings.square_queries + 1}
    return {"forward_single": settings.square_queries, "forward": 1}


def square_budget(settings) -> dict:
    return {"square_queries": settings.square_queries}


SPECS = (
    AttackSpec(
        name=NAME,
        tier="keyless",
        run=gradient_free,
        cost=square_cost,
        cascade_rank=50,
        doubled=lambda settings: dataclasses.replace(
            settings, square_queries=2 * settings.square_queries
        ),
        label=NAME,
        colour="tab:brown",
        box="black",
        budget=square_budget,
        budget_text=lambda settings: f"Square {settings.square_queries} queries",
        description="Square's queries to the deployed pipeline (scores only)",
    ),
)
