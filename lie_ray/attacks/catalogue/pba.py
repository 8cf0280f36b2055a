"""PBA, the parametric bypass approximation (Rusu et al., ICML 2022), and the key search from
the weights (AprilPyone & Kiya, TIFS 2021): two keyless attacks on what the attacker fits once
per scenario (``keyless_fit``), then PGD through it, scored on the deployed pipeline.

``pba`` attacks through the stand-in whose held-out agreement with the pipeline is best (its
variants: fitted to the pipeline's probabilities, to its images' labels, and started from the
key the search found); ``key-search`` through the transform under the key the search found,
with the transform's own backward (the key holder's, had that key been the key)."""

from __future__ import annotations

import dataclasses

from lie_ray.attacks.bypass import FIT_BATCH
from lie_ray.attacks.catalogue.keyless_fit import bypass_figures, fit_keyless, search_figures
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec

NAME, SEARCH = "pba", "key-search"


def pba(view, batch, eps, settings):
    stand_in = view.prepared.stand_in
    return through(lambda plain: view.network(stand_in(plain)), view, batch, eps, settings)


def key_search(view, batch, eps, settings):
    found = view.prepared.found.transform
    return through(
        lambda plain: view.network(found.with_grad(plain, None)), view, batch, eps, settings
    )


def fit_cost(settings) -> dict[str, float]:
    """The bypass's three fits (probabilities, labels, from the search's key), each
    ``pba_steps`` steps on up to ``FIT_BATCH`` images, and the pipeline's answers on the
    images it fits; judging the held-out part (a few passes over it) is not priced."""
    return {
        "attack": 3 * settings.pba_steps * min(FIT_BATCH, settings.attacker_images),
        "forward": settings.attacker_images,
    }


def search_cost(settings) -> dict[str, float]:
    """Every candidate key scored on every fitting image: one forward each."""
    return {"forward": settings.key_search_budget * settings.attacker_images}


def pba_budget(settings) -> dict:
    return {NAME: {"images": settings.attacker_images, "steps": settings.pba_steps}}


def search_budget(settings) -> dict:
    return {SEARCH: {"images": settings.attacker_images, "candidates": settings.key_search_budget}}


SPECS = (
    AttackSpec(
        name=SEARCH,
        tier="keyless",
        run=key_search,
        cost=pgd_cost,
        needs=frozenset({"transform", "attacker-images", "fixed-key"}),
        prepare=fit_keyless,
        prepare_cost=search_cost,
        fit_figures=search_figures,
        cascade_rank=25,
        label=SEARCH,
        colour="olive",
        budget=search_budget,
        budget_text=lambda settings: (
            f"key search over {settings.key_search_budget} candidate keys on "
            f"{settings.attacker_images} attacker images"
        ),
        description="PGD through the key under which the network is most accurate on the "
        "attacker's images, found by search from the weights",
    ),
    AttackSpec(
        name=NAME,
        tier="keyless",
        run=pba,
        cost=pgd_cost,
        needs=frozenset({"transform", "attacker-images"}),
        prepare=fit_keyless,
        prepare_cost=fit_cost,
        fit_figures=bypass_figures,
        doubled=lambda settings: dataclasses.replace(settings, pba_steps=2 * settings.pba_steps),
        carries_on=True,
        cascade_rank=30,
        label=NAME,
        colour="gold",
        budget=pba_budget,
        budget_text=lambda settings: (
            f"bypass fitted on {settings.attacker_images} attacker images in "
            f"{settings.pba_steps} steps per variant"
        ),
        description="PGD through a stand-in with the keyed transform's structure, fitted "
        "through the network on the attacker's own images",
    ),
)
