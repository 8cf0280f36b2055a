"""AutoAttack (Croce & Hein, ICML 2020): APGD-CE, APGD-T, FAB-T, Square, torchattacks' attacks
at the reference settings (``lie_ray.attacks.library``), through the true cipher forward and
the BPDA backward over both nibbles: the key holder's standard evaluation."""

from __future__ import annotations

from lie_ray.attacks.catalogue.common import library_attack
from lie_ray.attacks.library import autoattack as make_autoattack
from lie_ray.attacks.library import autoattack_settings
from lie_ray.attacks.spec import AttackSpec

NAME = "autoattack"


def autoattack(view, batch, eps, settings):
    return library_attack(
        view,
        lambda representative: view.pipeline.single_key_classifier(representative, "bpda-both"),
        batch,
        eps,
        lambda module: make_autoattack(
            module,
            eps,
            settings.autoattack,
            settings.autoattack_steps,
            settings.square_queries,
            settings.attacker_seed,
        ),
    )


def autoattack_cost(settings, alone=False):
    """APGD-CE, APGD-T per target, FAB-T per target (two gradients a step), then Square."""
    run = autoattack_settings(
        settings.autoattack, settings.autoattack_steps, settings.square_queries
    )
    gradients = run["apgd_steps"] * (1 + run["targets"]) + 2 * run["fab_steps"] * run["targets"]
    gradient_kind, query_kind = (
        ("attack_single", "forward_single") if alone else ("attack", "forward")
    )
    cost = {gradient_kind: gradients * run["restarts"], query_kind: run["square_queries"]}
    cost["forward"] = cost.get("forward", 0) + 1
    return cost


def autoattack_budget(settings) -> dict:
    return {
        NAME: autoattack_settings(
            settings.autoattack, settings.autoattack_steps, settings.square_queries
        )
    }


def autoattack_text(settings) -> str:
    run = autoattack_budget(settings)[NAME]
    plural = "es" if run["targets"] != 1 else ""
    return (
        f"AutoAttack {run['version']} (APGD-CE and APGD-T {run['apgd_steps']} iterations, "
        f"FAB-T {run['fab_steps']}, {run['targets']} target class{plural}, Square "
        f"{run['square_queries']} queries, {run['restarts']} restart each)"
    )


SPECS = (
    AttackSpec(
        name=NAME,
        tier="with-key",
        run=autoattack,
        cost=autoattack_cost,
        cascade_rank=70,
        label=NAME,
        colour="tab:pink",
        box="white",
        budget=autoattack_budget,
        budget_text=autoattack_text,
        description="AutoAttack (APGD-CE, APGD-T, FAB-T, Square) through BPDA",
    ),
)
