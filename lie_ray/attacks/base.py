"""What every attack shares: a classifier of PLAIN images, and the inputs' valid range.

The classifier is any callable mapping plain float images in [0, 1] to logits. For encrypted
scenarios it is ``model(encrypt(x))`` with the cipher's chosen backward pass, so the attacks
themselves never know about encryption: the threat model (perturb the plain image, then it is
encrypted and classified) lives in how the classifier is built.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lie_ray.errors import LieRayError

Classifier = Callable[[torch.Tensor], torch.Tensor]


class Attack:
    """Base class, in the manner of torchattacks: configure once, call on (images, labels)."""

    def __init__(self, classifier: Classifier, eps: float):
        if not 0 <= eps <= 1:
            raise LieRayError(f"eps must lie in [0, 1] (pixel scale), got {eps}")
        self.classifier = classifier
        self.eps = eps

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, **options) -> torch.Tensor:
        return self.forward(images, labels, **options)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_gradient(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """d(cross-entropy)/d(images), without touching any parameter's .grad."""
        images = images.detach().requires_grad_(True)
        loss = F.cross_entropy(self.classifier(images), labels)
        (grad,) = torch.autograd.grad(loss, images)
        return grad

    def loss_gradient_per_example(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(gradient, per-example loss, fooled) from one forward pass: what an attack that
        keeps its best iterate needs at every step."""
        images = images.detach().requires_grad_(True)
        logits = self.classifier(images)
        losses = F.cross_entropy(logits, labels, reduction="none")
        (grad,) = torch.autograd.grad(losses.sum(), images)
        return grad, losses.detach(), logits.detach().argmax(1) != labels

    def score(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(per-example loss, fooled), without a gradient."""
        with torch.no_grad():
            logits = self.classifier(images.detach())
        return F.cross_entropy(logits, labels, reduction="none"), logits.argmax(1) != labels

    def project(self, adversarial: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Back into the eps-ball around ``images`` and into the valid pixel range [0, 1]."""
        delta = torch.clamp(adversarial - images, -self.eps, self.eps)
        return torch.clamp(images + delta, 0, 1)
