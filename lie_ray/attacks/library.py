"""torchattacks' attacks on the defended pipeline: AutoAttack (Croce & Hein, ICML 2020) and
its Square attack (Andriushchenko et al., ECCV 2020).

torchattacks attacks an ``nn.Module``; ``PipelineModule`` makes one of any classifier of plain
images (for an encrypted scenario, ``model(encrypt(x))`` with the cipher's chosen backward),
keeping the network as a submodule so the library finds its device and can set eval mode.
Library attacks query arbitrary subsets of the rows they are given (those not yet fooled), so
every row given to one attack must share one key: callers attack one key group at a time.
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


def autoattack(module: torch.nn.Module, eps: float, version: str, steps: int, queries: int,
               seed: int) -> torchattacks.attack.Attack:
    """AutoAttack, L-inf. ``standard`` is torchattacks' standard version as shipped
    (APGD-CE, APGD-T over 9 targets, FAB-T over 9 targets, Square with 5000 queries); ``light``
    runs the same four with ``steps`` steps, the single most likely wrong class as target and
    ``queries`` Square queries. Each attack only sees the images the previous ones left."""
    if version == "standard":
        return torchattacks.AutoAttack(module, norm="Linf", eps=eps, version="standard",
                                       n_classes=N_CLASSES, seed=seed)
    common = {"norm": "Linf", "eps": eps, "seed": seed, "n_restarts": 1}
    return torchattacks.MultiAttack([
        torchattacks.APGD(module, steps=steps, loss="ce", **common),
        torchattacks.APGDT(module, steps=steps, n_classes=2, **common),  # 1 target class
        torchattacks.FAB(module, steps=steps, multi_targeted=True, n_classes=2, **common),
        square(module, eps, queries, seed),
    ])


def square(module: torch.nn.Module, eps: float, queries: int, seed: int
           ) -> torchattacks.attack.Attack:
    """Square attack, L-inf, margin loss, the reference schedule rescaled to ``queries``."""
    return torchattacks.Square(module, norm="Linf", eps=eps, n_queries=queries, n_restarts=1,
                               seed=seed, loss="margin", resc_schedule=True)
