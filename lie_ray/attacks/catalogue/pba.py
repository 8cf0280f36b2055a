"""PBA, the parametric bypass approximation (Rusu et al., ICML 2022): a keyless attacker with
the network's weights fits a stand-in for the keyed transform to the deployed pipeline's
outputs on images of its own (``lie_ray.attacks.bypass``), then attacks through it."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from lie_ray.attacks.bypass import FIT_BATCH, fit_bypass
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec
from lie_ray.models.device import images_to_device

NAME = "pba"


def network_device(network: torch.nn.Module) -> torch.device:
    tensor = next(iter(network.parameters()), None)
    if tensor is None:
        tensor = next(iter(network.buffers()), torch.zeros(0))
    return tensor.device


def fit_stand_in(view, settings) -> torch.nn.Module:
    """Once per scenario: the stand-in, fitted on the attacker's images through the oracle."""
    torch.manual_seed(settings.attacker_seed)
    own = images_to_device(view.attacker_images, network_device(view.network))
    ids = np.arange(len(own))
    return fit_bypass(
        view.network,
        lambda x: view.oracle.logits(x, ids[: len(x)]),
        own,
        view.transform.block_size,
        settings.pba_steps,
        seed=settings.attacker_seed,
    )


def pba(view, batch, eps, settings):
    stand_in = view.prepared
    return through(lambda plain: view.network(stand_in(plain)), view, batch, eps, settings)


def fit_cost(settings) -> dict[str, float]:
    """The stand-in's fit: the pipeline's outputs on every attacker image, then ``pba_steps``
    Adam steps on ``FIT_BATCH`` of them (paid once per scenario in every actor)."""
    return {
        "attack": settings.pba_steps * min(FIT_BATCH, settings.attacker_images),
        "forward": settings.attacker_images,
    }


def pba_budget(settings) -> dict:
    return {NAME: {"images": settings.attacker_images, "steps": settings.pba_steps}}


SPECS = (
    AttackSpec(
        name=NAME,
        tier="keyless",
        run=pba,
        cost=pgd_cost,
        needs=frozenset({"transform", "attacker-images"}),
        prepare=fit_stand_in,
        prepare_cost=fit_cost,
        doubled=lambda settings: dataclasses.replace(settings, pba_steps=2 * settings.pba_steps),
        cascade_rank=30,
        label=NAME,
        colour="gold",
        budget=pba_budget,
        budget_text=lambda settings: (
            f"PBA fitted on {settings.attacker_images} attacker images in "
            f"{settings.pba_steps} steps"
        ),
        description="PGD through a stand-in for the keyed transform, fitted to the pipeline's "
        "outputs on the attacker's own images",
    ),
)
