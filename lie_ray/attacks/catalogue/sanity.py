"""Carlini et al.'s (2019) checks need three more runs of the white-box PGD (the key, and the
transform's own backward): unbounded (eps 1), and at the headline epsilon once as set and once
with twice the steps and restarts. The keyless attacks that carry a key-based defence's
headline get the same 2x check (``doubled_run``: EOT with twice the keys, PBA fitted twice as
long, Square with twice the queries), each on the images the attack met. Their rows are not
attacks to report: the report's sanity section reads them (by ``checks``), and no worst case
takes them."""

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


def headline(settings):
    return settings.headline_epsilon()


def doubled_run(spec: AttackSpec) -> AttackSpec:
    """``spec`` again with twice its effort (``AttackSpec.doubled``), a sanity run at the
    headline epsilon on the images ``spec`` met there: the 2x check compares the two. Its own
    name gives it its own random draws (``seeding.salted``)."""
    twice = spec.doubled
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-2x",
        label=f"{spec.label} 2x",
        role="sanity",
        cascade_rank=0,
        cost=lambda settings, alone=False: spec.cost(twice(settings), alone),
        # priced at the effort the estimate hands a sanity run: its sanity_settings, doubled
        prepare_cost=spec.prepare_cost,
        same_run=None,
        box=None,  # compared with the attack it repeats, not by the gradient-masking check
        budget=None,
        budget_text=None,
        sanity_epsilon=headline,
        sanity_settings=twice,
        checks="doubled",
        reference=spec.name,
        doubled=None,
        description=f"{spec.name} with twice its effort (the 2x check)",
    )


def sanity(
    name: str,
    checks: str,
    epsilon,
    budget=lambda settings: settings,
    box=None,
    reference: str | None = None,
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
        reference=reference,
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
    sanity("sanity-pgd", "once", headline, box="white"),
    sanity("sanity-pgd-2x", "doubled", headline, doubled, reference="sanity-pgd"),
)
