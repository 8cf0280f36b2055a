"""Fast gradient sign method (Goodfellow, Shlens & Szegedy, ICLR 2015): one step of size eps."""

from __future__ import annotations

import torch

from lie_ray.attacks.base import Attack


class FGSM(Attack):
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        grad = self.loss_gradient(images, labels)
        return self.project(images + self.eps * grad.sign(), images).detach()
