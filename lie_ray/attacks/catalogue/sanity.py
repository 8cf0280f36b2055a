"""Carlini et al.'s (2019) checks need three more runs of the white-box PGD (the key, and the
transform's own backward): unbounded (eps 1), and at the headline epsilon once as set and once
with twice the steps and restarts. Their rows are not attacks to report: the report's sanity
section reads them (by ``checks``), and no worst case takes them."""

from __future__ import annotations

import dataclasses

from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec


def white_box(view, batch, eps, settings):
    """PGD with all the attacker could know: the key, and the transform's own backward (its
    true gradient, or its default BPDA surrogate). The sanity checks' reference attack."""
    return through(view.pipeline.classifier(batch.ids, None), view, batch, eps, settings)


def doubled(settings):
    return dataclasses.replace(
        settings, pgd_steps=2 * settings.pgd_steps, pgd_restarts=2 * settings.pgd_restarts
    )


def sanity(
    name: str, checks: str, epsilon, budget=lambda settings: settings, box=None
) -> AttackSpec:
    return AttackSpec(
        name=name,
        tier="with-key",
        run=white_box,
        cost=lambda settings, alone=False: pgd_cost(budget(settings)),
        role="sanity",
        cascade_rank=0,
        label=name,
        box=box,
        sanity_epsilon=epsilon,
        sanity_settings=budget,
        checks=checks,
        description="the white-box PGD of the sanity checks",
    )


SPECS = (
    # unbounded: any image is reachable; run only where some epsilon was attacked
    sanity(
        "sanity-unbounded",
        "unbounded",
        lambda settings: None if settings.headline_epsilon() is None else 1.0,
    ),
    # the white-box reference of the gradient-masking check (lie_ray.report.sanity)
    sanity("sanity-pgd", "once", lambda settings: settings.headline_epsilon(), box="white"),
    sanity("sanity-pgd-2x", "doubled", lambda settings: settings.headline_epsilon(), doubled),
)
