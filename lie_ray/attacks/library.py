"""torchattacks' attacks on the defended pipeline: AutoAttack (Croce & Hein, ICML 2020) and
its Square attack (Andriushchenko et al., ECCV 2020).

torchattacks attacks an ``nn.Module``; ``PipelineModule`` makes one of any classifier of plain
images (for an encrypted scenario, ``model(encrypt(x))`` with the cipher's chosen backward),
keeping the network as a submodule so the library finds its device and can set eval mode.
Library attacks query arbitrary subsets of the rows they are given (those not yet fooled), and
draw their randomness for the whole batch: callers attack one image at a time, seeded by its id
(``lie_ray.evaluation.protocols.per_image``).
"""
from __future__ import annotations

import torch
import torchattacks

from lie_ray.attacks.base import Classifier

N_CLASSES = 10


class PipelineModule(torch.nn.Module):
    def __init__(self, classify: Classifier, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.classify = classify
        self.eval()

    def train(self, mode: bool = True) -> "PipelineModule":
        """Always eval mode. torchattacks restores the mode it found after every attack, and a
        fresh module starts in training mode: that would leave the defender's (shared) network
        with BatchNorm on batch statistics, and every later prediction wrong."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(images)


# Croce & Hein (ICML 2020) and their reference code (fra31/auto-attack, version "standard"):
# APGD-CE and APGD-T (DLR loss, 9 target classes) with 100 iterations and one restart each,
# FAB-T over 9 targets with 100 iterations, Square with 5000 queries. torchattacks'
# AutoAttack(version="standard") leaves its attacks at their default 10 steps, so the four
# are composed here with the reference settings spelled out.
STANDARD = {"apgd_steps": 100, "fab_steps": 100, "targets": N_CLASSES - 1,
            "square_queries": 5000, "restarts": 1}


def autoattack_settings(version: str, steps: int, queries: int) -> dict:
    """What an AutoAttack version runs, for the report and the results' provenance."""
    if version == "standard":
        return {"version": version, **STANDARD}
    return {"version": version, "apgd_steps": steps, "fab_steps": steps, "targets": 1,
            "square_queries": queries, "restarts": 1}


def autoattack(module: torch.nn.Module, eps: float, version: str, steps: int, queries: int,
               seed: int) -> torchattacks.attack.Attack:
    """AutoAttack, L-inf: APGD-CE, APGD-T, FAB-T, then Square, each on the images the ones
    before it left unfooled. ``standard`` at Croce & Hein's settings; ``light`` with ``steps``
    iterations, the single most likely wrong class as target and ``queries`` Square queries."""
    run = autoattack_settings(version, steps, queries)
    common = {"norm": "Linf", "eps": eps, "seed": seed, "n_restarts": run["restarts"]}
    classes = run["targets"] + 1  # torchattacks targets its n_classes - 1 likeliest others
    return torchattacks.MultiAttack([
        torchattacks.APGD(module, steps=run["apgd_steps"], loss="ce", **common),
        torchattacks.APGDT(module, steps=run["apgd_steps"], n_classes=classes, **common),
        torchattacks.FAB(module, steps=run["fab_steps"], multi_targeted=True,
                         n_classes=classes, **common),
        square(module, eps, run["square_queries"], seed,
               rescale=version != "standard"),
    ])


def square(module: torch.nn.Module, eps: float, queries: int, seed: int, rescale: bool = True
           ) -> torchattacks.attack.Attack:
    """Square attack, L-inf, margin loss, p_init 0.8; its square-size schedule rescaled to
    ``queries`` (AutoAttack standard keeps the reference's own schedule for its 5000)."""
    return torchattacks.Square(module, norm="Linf", eps=eps, n_queries=queries, n_restarts=1,
                               p_init=0.8, seed=seed, loss="margin", resc_schedule=rescale)
