"""Square Attack, L-infinity (Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a
query-efficient black-box adversarial attack via random search", ECCV 2020).

Gradient-free: it needs only the classifier's scores, so it is the attack that an obfuscated
gradient (a cipher with no useful backward pass) cannot stop. Random search on the margin loss:
start from vertical stripes of +-eps, then repeatedly redraw a random square of +-eps and keep
it only where the margin drops. The square shrinks on the reference implementation's schedule,
so early queries explore coarsely and late ones refine.
"""
from __future__ import annotations

import math

import torch

from lie_ray.attacks.base import Attack, Classifier
from lie_ray.errors import LieRayError

# Iterations (on the paper's 10,000-query scale) after which the square's area halves again.
_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


class SquareAttack(Attack):
    def __init__(self, classifier: Classifier, eps: float = 0.1, queries: int = 100,
                 p_init: float = 0.05, seed: int = 0):
        super().__init__(classifier, eps)
        if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
            raise LieRayError(f"Square Attack needs a whole number of queries, at least 1, got "
                              f"{queries!r}")
        if not 0 < p_init <= 1:
            raise LieRayError(f"p_init (fraction of pixels in the first square) must lie in "
                              f"(0, 1], got {p_init}")
        self.queries, self.p_init, self.seed = queries, p_init, seed

    @torch.no_grad()
    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        images = images.detach()
        generator = torch.Generator(device=images.device).manual_seed(self.seed)
        adversarial = self.stripes(images, generator)
        margin = self.margin(adversarial, labels)
        for iteration in range(self.queries - 1):  # the stripes spent the first query
            active = margin >= 0
            if not active.any():
                break
            adversarial[active], margin[active] = self.step(
                adversarial[active], images[active], labels[active], margin[active],
                iteration, generator)
        return adversarial

    def stripes(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Vertical stripes: the paper found them the best start against untargeted CNNs."""
        n, c, _, w = images.shape
        return self.project(images + self.random_signs((n, c, 1, w), images, generator), images)

    def step(self, adversarial: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
             margin: torch.Tensor, iteration: int, generator: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """One query per example: try a fresh square, keep it only where the margin dropped."""
        n, c, h, w = images.shape
        inside = self.square_mask(n, h, w, self.side(iteration, h, w), images.device, generator)
        signs = self.random_signs((n, c, 1, 1), images, generator)
        # The square is set around the ORIGINAL image, so a pixel can swing from -eps to +eps.
        delta = torch.where(inside, signs, adversarial - images)
        candidate = self.project(images + delta, images)
        candidate_margin = self.margin(candidate, labels)
        better = candidate_margin < margin
        return (torch.where(better[:, None, None, None], candidate, adversarial),
                torch.where(better, candidate_margin, margin))

    def margin(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """True-class logit minus the best other one: negative exactly when it is fooled."""
        logits = self.classifier(images)
        true = logits.gather(1, labels[:, None]).squeeze(1)
        others = logits.scatter(1, labels[:, None], float("-inf"))
        return true - others.amax(dim=1)

    def side(self, iteration: int, height: int, width: int) -> int:
        """The square's side: area p * H * W, with p halved on the paper's schedule.

        The schedule is written for 10,000 queries; the reference implementation rescales the
        iteration to that budget, so a short run still shrinks its squares to the end.
        """
        scaled = int(iteration / self.queries * 10000)
        p = self.p_init / 2 ** sum(scaled > threshold for threshold in _HALVINGS)
        return min(max(1, round(math.sqrt(p * height * width))), height, width)

    @staticmethod
    def square_mask(n: int, height: int, width: int, side: int, device: torch.device,
                    generator: torch.Generator) -> torch.Tensor:
        """(n, 1, H, W) booleans, one randomly placed side x side square per example."""
        top = torch.randint(0, height - side + 1, (n, 1), generator=generator, device=device)
        left = torch.randint(0, width - side + 1, (n, 1), generator=generator, device=device)
        rows = torch.arange(height, device=device)
        cols = torch.arange(width, device=device)
        in_rows = (rows >= top) & (rows < top + side)
        in_cols = (cols >= left) & (cols < left + side)
        return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]

    def random_signs(self, shape: tuple[int, ...], like: torch.Tensor,
                     generator: torch.Generator) -> torch.Tensor:
        """+-eps with equal odds, in ``like``'s dtype and device."""
        bits = torch.randint(0, 2, shape, generator=generator, device=like.device)
        return (2 * bits - 1).to(like.dtype) * self.eps
