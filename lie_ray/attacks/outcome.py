"""What an evaluation is handed and what it hands back: a ``Batch`` of plain test images, and
an ``Outcome`` (the deployed pipeline's predictions on the adversarial images, and the
perturbation really applied).

Every adversarial plain image is scored as the deployed pipeline receives it (``deployed``):
8-bit pixels, within eps of the 8-bit plain image exactly. An attack asked for eps therefore
works in the ball it is scored in, ``effective_epsilon(eps)`` = floor(255 eps)/255 (eps 0.1:
25/255), with its step derived from that ball: an attack at eps 0.1 and one at 25/255 are the
same attack, and no success found at 25.5 levels is undone by clipping to 25.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from lie_ray.attacks.views import Oracle


# Where an adversarial image lives: what the deployed pipeline takes (a plain image), or what
# its network takes (a ciphertext: the channel attacker's).
PLAIN, CIPHER = "plain", "cipher"


@dataclass
class Outcome:
    """Per-example predictions on the adversarial images, and the L-inf perturbation applied."""

    predictions: torch.Tensor
    linf: torch.Tensor
    # Worst cases: per example the member that broke it first ("clean": it was misclassified
    # already, "": unbroken) and at which epsilon (NaN: unbroken). A composite attack
    # (AutoAttack): the part of it that broke the example, and no epsilon.
    broken_by: np.ndarray | None = None
    broken_at: np.ndarray | None = None
    # An earlier run's outcome handed on (the same attack, ``AttackSpec.same_run``): it cost
    # no passes, so the cost model, which prices what ran, leaves these rows out.
    reused: bool = False
    # The images the predictions are of, as deployed (whole 8-bit levels as floats in [0, 1],
    # NCHW), in ``space`` (PLAIN or CIPHER; per example where a worst case unites both): what
    # ``lie-ray verify`` classifies again. None from an attack that keeps none (a plug-in's).
    adversarial: torch.Tensor | None = None
    space: str | np.ndarray = PLAIN

    def __post_init__(self):
        # A record of what happened, never part of a graph: an attack that hands back a tensor
        # still attached to autograd must not leak it into the tables.
        self.predictions, self.linf = self.predictions.detach(), self.linf.detach()
        if self.adversarial is not None:
            self.adversarial = self.adversarial.detach()

    def subset(self, rows: np.ndarray) -> Outcome:
        index = torch.from_numpy(rows).to(self.predictions.device)
        return Outcome(
            self.predictions[index],
            self.linf[index],
            adversarial=None if self.adversarial is None else self.adversarial[index],
            space=self.space if isinstance(self.space, str) else self.space[rows],
        )

    def spaces(self) -> np.ndarray:
        """``space`` per example."""
        if isinstance(self.space, str):
            return np.full(len(self.predictions), self.space, dtype=object)
        return self.space


@dataclass
class Batch:
    images: torch.Tensor  # plain, float NCHW in [0, 1]
    labels: torch.Tensor
    ids: np.ndarray

    def subset(self, rows: np.ndarray) -> Batch:
        """The batch's ``rows``: what a cascaded attack gets (ids and labels go with them)."""
        index = torch.from_numpy(rows).to(self.images.device)
        return Batch(self.images[index].contiguous(), self.labels[index], self.ids[rows])


def levels(eps: float) -> int:
    """The whole 8-bit levels eps allows a pixel to move: floor(255 eps), with a tolerance for
    epsilons that passed through float32 (8/255 must stay 8 levels)."""
    return math.floor(eps * 255 + 1e-6)


def effective_epsilon(eps: float) -> float:
    """The ball an attack asked for ``eps`` works in: the one it is scored in."""
    return levels(eps) / 255


def deployed(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """The adversarial image as the deployed pipeline receives it: 8-bit pixels, each within
    eps of the 8-bit plain image. Rounding the attack's float image instead would move a pixel
    by up to eps + 0.5/255 (26/255 at eps 0.1); the perturbation is rounded to whole levels
    and clipped to the floor(255 * eps) levels that eps allows."""
    allowed = levels(eps)
    plain = torch.round(images * 255)
    delta = torch.clamp(torch.round((adversarial - images) * 255), -allowed, allowed)
    return torch.clamp(plain + delta, 0, 255) / 255


def scored(oracle: Oracle, batch: Batch, adversarial: torch.Tensor, eps: float) -> Outcome:
    """An attack's adversarial PLAIN images, scored as deployed: what the pipeline predicts
    (asked of its oracle, as any user of it could) and the perturbation applied."""
    adversarial = deployed(adversarial.detach(), batch.images, eps)
    return Outcome(
        oracle.predict(adversarial, batch.ids),
        (adversarial - batch.images).abs().flatten(1).amax(1),
        adversarial=adversarial,
    )


def worst_of(outcomes: list[Outcome], labels: torch.Tensor) -> Outcome:
    """Per example, the first outcome that fools the model (else the first one), with its
    adversarial image where every outcome kept one. Callers put the clean outcome first, so
    an image misclassified already counts with its zero perturbation, whatever the attacks
    did."""
    predictions, linf = outcomes[0].predictions.clone(), outcomes[0].linf.clone()
    kept = all(outcome.adversarial is not None for outcome in outcomes)
    adversarial = outcomes[0].adversarial.clone() if kept else None
    fooled = predictions != labels
    for outcome in outcomes[1:]:
        take = ~fooled & (outcome.predictions != labels)
        predictions[take], linf[take] = outcome.predictions[take], outcome.linf[take]
        if kept:
            adversarial[take] = outcome.adversarial[take]
        fooled |= take
    return Outcome(predictions, linf, adversarial=adversarial, space=outcomes[0].space)
