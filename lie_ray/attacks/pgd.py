"""Projected gradient descent, L-infinity (Madry et al., "Towards Deep Learning Models
Resistant to Adversarial Attacks", ICLR 2018). The paper's settings: eps 0.1, step 0.01, 20
steps, on the plain image."""
from __future__ import annotations

import torch

from lie_ray.attacks.base import Attack, Classifier
from lie_ray.errors import LieRayError


class PGD(Attack):
    def __init__(self, classifier: Classifier, eps: float = 0.1, step_size: float = 0.01,
                 steps: int = 20, random_start: bool = True):
        super().__init__(classifier, eps)
        if not 0 < step_size <= 1:
            raise LieRayError(f"step size must lie in (0, 1], got {step_size}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise LieRayError(f"PGD needs a whole number of steps, at least 1, got {steps!r}")
        self.step_size, self.steps, self.random_start = step_size, steps, random_start

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        adversarial = self.random_perturb(images) if self.random_start else images.clone()
        for _ in range(self.steps):
            adversarial = self.step(adversarial, images, labels)
        return adversarial.detach()

    def random_perturb(self, images: torch.Tensor) -> torch.Tensor:
        noise = torch.empty_like(images).uniform_(-self.eps, self.eps)
        return torch.clamp(images + noise, 0, 1)

    def step(self, adversarial: torch.Tensor, images: torch.Tensor, labels: torch.Tensor
             ) -> torch.Tensor:
        grad = self.loss_gradient(adversarial, labels)
        return self.project(adversarial + self.step_size * grad.sign(), images)
