"""EOT over keys (Athalye, Carlini & Wagner, ICML 2018): a keyless attacker who knows the
transform draws keys of its own, fresh at every step, and follows the average gradient."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch

from lie_ray.attacks.base import Classifier
from lie_ray.attacks.pgd_through import through
from lie_ray.attacks.spec import AttackSpec
from lie_ray.keys import Key
from lie_ray.transforms import Transform, TransformSpec, build

NAME = "eot"


class AttackerKeys:
    """Keys an attacker without the secret draws for the defender's transform: a FRESH set of
    ``count`` at every call (Expectation over Transformation samples the transformation anew
    at each step; reusing one set would attack a fixed ensemble instead). Reproducible from
    the attacker's own seed, independent of the defender's master key; a new instance starts
    the sequence again, so a batch's attack does not depend on what ran before it."""

    def __init__(self, spec: TransformSpec, count: int, seed: int):
        self.spec, self.count, self.draws = spec, count, 0
        self.master = Key("master", seed.to_bytes(32, "little"), spec.block_size)

    def __call__(self) -> list[Transform]:
        draw, self.draws = self.draws, self.draws + 1
        return [
            build(
                self.spec.name,
                self.master,
                self.spec.block_size,
                f"eot/{draw}/{k}",
                self.spec.variant,
            )
            for k in range(self.count)
        ]


def eot_classifier(model: torch.nn.Module, draw: Callable[[], list[Transform]]) -> Classifier:
    """Expectation over Transformation over keys, with keys from ``draw()`` at every call
    (every attack step).

    Returns the mean log-probabilities over the keys, so the attack's cross-entropy is that of
    the keys' geometric-mean prediction and its gradient averages the per-key gradients; with
    one key it is exactly the BPDA gradient through that key (a test checks this)."""

    def classify(plain: torch.Tensor) -> torch.Tensor:
        log_probs = [
            torch.log_softmax(model(c.with_grad(plain, "bpda-both")), dim=1) for c in draw()
        ]
        return torch.stack(log_probs).mean(0)

    return classify


def eot(view, batch, eps, settings):
    keys = AttackerKeys(view.transform, settings.eot_keys, settings.attacker_seed)
    return through(eot_classifier(view.network, keys), view, batch, eps, settings)


def eot_cost(settings, alone=False):
    runs, keys = settings.pgd_restarts, settings.eot_keys
    return {"attack": settings.pgd_steps * runs * keys, "forward": runs * keys + 1}


def eot_budget(settings) -> dict:
    return {NAME: {"keys_per_step": settings.eot_keys, "fresh_keys_every_step": True}}


SPECS = (
    AttackSpec(
        name=NAME,
        tier="keyless",
        run=eot,
        cost=eot_cost,
        needs=frozenset({"transform"}),
        doubled=lambda settings: dataclasses.replace(settings, eot_keys=2 * settings.eot_keys),
        cascade_rank=40,
        label=NAME,
        colour="tab:green",
        budget=eot_budget,
        budget_text=lambda settings: (
            f"EOT over {settings.eot_keys} fresh attacker keys at every step"
        ),
        description="PGD on the average gradient over fresh keys of the attacker's own",
    ),
)
