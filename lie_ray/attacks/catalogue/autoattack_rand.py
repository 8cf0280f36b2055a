"""AutoAttack's ``rand`` version (Croce & Hein, ICML 2020) for a randomised defence: APGD-CE
then APGD-DLR, each step's gradient the mean over fresh draws of the randomness (the
reference: 100 iterations, 20 draws). Under the per-image and per-minibatch key policies the
keyless attacker faces a key it cannot know and that changes under it, so every draw is a key
of the attacker's own (``eot.AttackerKeys``), fresh at every forward pass, through the
transform's own backward; the images are then scored on the deployed pipeline."""

from __future__ import annotations

import numpy as np
import torch

from lie_ray.attacks.catalogue.eot import AttackerKeys
from lie_ray.attacks.library import APGD, PipelineModule
from lie_ray.attacks.outcome import scored
from lie_ray.attacks.spec import AttackSpec

NAME = "autoattack-rand"


def fresh_key_classifier(view, settings):
    """The network behind a key of the attacker's own, drawn anew at every call: what
    torchattacks' ``eot_iter`` averages over."""
    keys = AttackerKeys(view.transform, 1, settings.attacker_seed)

    def classify(plain: torch.Tensor) -> torch.Tensor:
        (transform,) = keys()
        return view.network(transform.with_grad(plain, None))

    return classify


def autoattack_rand(view, batch, eps, settings):
    """The whole batch in one call: the attacker's keys are its own, not the defender's, so
    the rows need no grouping by key; each image's random start is its own (``OwnDraws``),
    and each step draws the same number of keys whatever rows it holds."""
    module = PipelineModule(fresh_key_classifier(view, settings), view.network)
    common = {
        "norm": "Linf",
        "eps": eps,
        "seed": settings.attacker_seed,
        "n_restarts": 1,
        "steps": settings.rand_steps,
        "eot_iter": settings.rand_draws,
    }
    first = scored(
        view.oracle, batch, APGD(module, loss="ce", **common)(batch.images, batch.labels), eps
    )
    # APGD-DLR on what APGD-CE left unbroken, judged on the deployed pipeline (the
    # attacker's own keys would judge a random key, not the defender's)
    left = np.flatnonzero((first.predictions == batch.labels).cpu().numpy())
    if len(left) == 0:
        return first
    part = batch.subset(left)
    second = scored(
        view.oracle, part, APGD(module, loss="dlr", **common)(part.images, part.labels), eps
    )
    index = torch.from_numpy(left).to(batch.labels.device)
    fooled = second.predictions != part.labels
    first.predictions[index[fooled]] = second.predictions[fooled]
    first.linf[index[fooled]] = second.linf[fooled]
    first.adversarial[index[fooled]] = second.adversarial[fooled]
    return first


def rand_cost(settings, alone=False):
    """Two APGD runs, each step ``rand_draws`` forward-and-backward passes."""
    return {"attack": 2 * settings.rand_steps * settings.rand_draws, "forward": 3}


def rand_budget(settings) -> dict:
    return {NAME: {"apgd_steps": settings.rand_steps, "draws_per_step": settings.rand_draws}}


SPECS = (
    AttackSpec(
        name=NAME,
        tier="keyless",
        run=autoattack_rand,
        cost=rand_cost,
        needs=frozenset({"transform", "randomised-key"}),
        cascade_rank=45,
        label=NAME,
        colour="darkviolet",
        budget=rand_budget,
        budget_text=lambda settings: (
            f"AutoAttack rand (APGD-CE, APGD-DLR; {settings.rand_steps} iterations, "
            f"{settings.rand_draws} fresh attacker keys per step)"
        ),
        description="AutoAttack's version for randomised defences, over fresh keys of the "
        "attacker's own",
    ),
)
