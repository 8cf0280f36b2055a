"""Projected gradient descent, L-infinity (Madry et al., "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018). The paper's settings: eps 0.1, step 0.01, 20
steps, on the plain image.

Per example it returns the BEST iterate over all steps and restarts (one that fools the
classifier, else the one of highest loss), not the last: a sign step may overshoot, and
Carlini et al. (2019, "On Evaluating Adversarial Robustness") count the last iterate as a
weakened attack. Each step's forward pass gives both the loss that ranks the iterate and the
gradient of the next step, so tracking costs one forward pass per restart.
"""

from __future__ import annotations

import numpy as np
import torch

from lie_ray.attacks import seeding
from lie_ray.attacks.base import Attack, Classifier
from lie_ray.errors import LieRayError


class PGD(Attack):
    def __init__(
        self,
        classifier: Classifier,
        eps: float = 0.1,
        step_size: float = 0.01,
        steps: int = 20,
        random_start: bool = True,
        restarts: int = 1,
        seed: int | None = None,
    ):
        super().__init__(classifier, eps)
        if not 0 < step_size <= 1:
            raise LieRayError(f"step size must lie in (0, 1], got {step_size}")
        for name, value in (("steps", steps), ("restarts", restarts)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LieRayError(f"PGD needs a whole number of {name}, at least 1, got {value!r}")
        self.step_size, self.steps, self.random_start = step_size, steps, random_start
        self.restarts, self.seed = restarts, seed

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, ids: np.ndarray | None = None
    ) -> torch.Tensor:
        """``ids`` (with a ``seed``): each image's random starts are its own (``seeding``),
        so its outcome does not depend on the batch it is attacked in."""
        images = images.detach()
        best = Best(images)
        for restart in range(self.restarts):
            adversarial = (
                self.random_perturb(images, ids, restart) if self.random_start else images.clone()
            )
            for _ in range(self.steps):
                grad, losses, fooled = self.loss_gradient_per_example(adversarial, labels)
                best.update(adversarial, losses, fooled)
                adversarial = self.project(adversarial + self.step_size * grad.sign(), images)
            best.update(adversarial, *self.score(adversarial, labels))
        return best.images

    def random_perturb(
        self, images: torch.Tensor, ids: np.ndarray | None = None, restart: int = 0
    ) -> torch.Tensor:
        if ids is not None and self.seed is not None:
            unit = seeding.uniform(
                ids, self.seed, restart, tuple(images.shape), images.device, images.dtype
            )
        else:
            unit = torch.rand_like(images)
        return torch.clamp(images + (2 * unit - 1) * self.eps, 0, 1)


class Best:
    """Per example, the iterate of highest loss among those that fool the classifier, else of
    highest loss overall (the deepest success survives 8-bit rounding best; ties keep the
    earlier iterate)."""

    def __init__(self, images: torch.Tensor):
        self.images = images.clone()
        self.losses = torch.full(
            (len(images),), -torch.inf, device=images.device, dtype=torch.float64
        )
        self.fooled = torch.zeros(len(images), dtype=torch.bool, device=images.device)

    def update(self, candidate: torch.Tensor, losses: torch.Tensor, fooled: torch.Tensor) -> None:
        losses = losses.detach().to(torch.float64)
        better = (fooled & ~self.fooled) | ((fooled == self.fooled) & (losses > self.losses))
        self.images[better] = candidate.detach()[better]
        self.losses[better], self.fooled[better] = losses[better], fooled[better]
