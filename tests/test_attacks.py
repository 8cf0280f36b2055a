"""The attacks against linear classifiers, where the best perturbation is known in closed form.

For ``logits = x @ W.T + b`` with two classes, the cross-entropy gradient w.r.t. x is a positive
multiple of ``W[other] - W[true]`` everywhere, so its sign (FGSM's step, PGD's every step) is
constant and the optimal L-inf perturbation is ``eps * sign(W[other] - W[true])``. It lowers
the margin by exactly ``eps * ||W[true] - W[other]||_1`` while no pixel is clipped, which says
in advance which examples any eps-bounded attack can flip.
"""

from __future__ import annotations

import pytest
import torch

from lie_ray.attacks import FGSM, PGD
from lie_ray.errors import LieRayError

SHAPE = (3, 8, 8)
N = 32


def linear_classifier(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(2, torch.Size(SHAPE).numel(), generator=generator, dtype=torch.float64)
    bias = torch.randn(2, generator=generator, dtype=torch.float64)
    return weight, bias


def as_classifier(weight: torch.Tensor, bias: torch.Tensor):
    return lambda x: x.flatten(1) @ weight.T + bias


def mid_range_images(seed: int = 1) -> torch.Tensor:
    """Pixels in [0.3, 0.7]: an eps of up to 0.3 never clips, so the closed form is exact."""
    generator = torch.Generator().manual_seed(seed)
    return 0.3 + 0.4 * torch.rand(N, *SHAPE, generator=generator, dtype=torch.float64)


def edge_images(seed: int = 2) -> torch.Tensor:
    """A third of the pixels at 0, a third at 1, the rest anywhere between: clipping bites."""
    generator = torch.Generator().manual_seed(seed)
    choice = torch.randint(0, 3, (N, *SHAPE), generator=generator)
    middle = torch.rand(N, *SHAPE, generator=generator, dtype=torch.float64)
    return torch.where(choice == 0, 0.0, torch.where(choice == 1, 1.0, middle))


def optimal_adversarial(images, labels, weight, eps):
    direction = (weight[1 - labels] - weight[labels]).sign().reshape(images.shape)
    return images + eps * direction


def margins(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    true, other = labels[:, None], (1 - labels)[:, None]
    return (logits.gather(1, true) - logits.gather(1, other)).squeeze(1)


@pytest.fixture(autouse=True)
def one_thread():
    """Tensors this small gain nothing from a second intra-op thread, and on a busy CPU it makes
    every op wait (small attack tests ran 40x slower)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def labels():
    return torch.randint(0, 2, (N,), generator=torch.Generator().manual_seed(3))


def test_fgsm_takes_the_closed_form_step(labels):
    weight, bias = linear_classifier()
    images = mid_range_images()
    adversarial = FGSM(as_classifier(weight, bias), eps=0.1)(images, labels)
    assert torch.equal(adversarial, optimal_adversarial(images, labels, weight, 0.1))


def test_pgd_converges_to_the_closed_form_corner(labels):
    weight, bias = linear_classifier()
    images = mid_range_images()
    # 20 steps of 0.01 overshoot eps = 0.1, so the last steps are clamped onto the corner exactly.
    attack = PGD(as_classifier(weight, bias), eps=0.1, step_size=0.01, steps=20, random_start=False)
    assert torch.equal(attack(images, labels), optimal_adversarial(images, labels, weight, 0.1))


def test_pgd_from_a_random_start_reaches_the_same_corner(labels):
    weight, bias = linear_classifier()
    images = mid_range_images()
    torch.manual_seed(0)  # PGD's random start draws from the global generator
    # From the far side of the ball, 2 * eps / step_size = 20 steps cross it; 30 leave slack.
    attack = PGD(as_classifier(weight, bias), eps=0.1, step_size=0.01, steps=30, random_start=True)
    assert torch.equal(attack(images, labels), optimal_adversarial(images, labels, weight, 0.1))


def every_attack(classifier, eps):
    return [
        FGSM(classifier, eps=eps),
        PGD(classifier, eps=eps, step_size=max(eps / 4, 0.01), steps=10, random_start=True),
        PGD(classifier, eps=eps, step_size=0.05, steps=10, random_start=False),
    ]


@pytest.mark.parametrize("images", [mid_range_images(), edge_images()], ids=["mid", "edges"])
@pytest.mark.parametrize("eps", [0.0, 0.03, 0.1, 0.5, 1.0])
def test_every_attack_stays_in_the_eps_ball_and_the_pixel_range(images, eps, labels):
    torch.manual_seed(0)
    classifier = as_classifier(*linear_classifier())
    for attack in every_attack(classifier, eps):
        adversarial = attack(images, labels)
        name = type(attack).__name__
        assert adversarial.shape == images.shape and adversarial.dtype == images.dtype, name
        assert (adversarial - images).abs().max() <= eps + 1e-12, name
        assert adversarial.min() >= 0 and adversarial.max() <= 1, name


@pytest.mark.parametrize(
    "make",
    [
        lambda c: FGSM(c, eps=-0.1),
        lambda c: FGSM(c, eps=1.5),
        lambda c: PGD(c, eps=-0.01),
        lambda c: PGD(c, eps=2.0),
        lambda c: PGD(c, steps=0),
        lambda c: PGD(c, step_size=0.0),
        lambda c: PGD(c, step_size=-0.01),
    ],
    ids=[
        "fgsm-eps-neg",
        "fgsm-eps-big",
        "pgd-eps-neg",
        "pgd-eps-big",
        "pgd-steps-0",
        "pgd-step-0",
        "pgd-step-neg",
    ],
)
def test_bad_arguments_raise_lie_ray_error(make):
    with pytest.raises(LieRayError):
        make(as_classifier(*linear_classifier()))


class Bump(torch.autograd.Function):
    """Forward: a score that peaks half-way to the eps corner and falls away beyond it;
    backward: a constant +1, as a BPDA surrogate that overshoots would give. PGD follows the
    gradient to the corner, so its last iterate is where the score is low again."""

    @staticmethod
    def forward(ctx, x, peak):
        return 10 - 400 * (x - peak).abs().flatten(1).mean(1, keepdim=True)

    @staticmethod
    def backward(ctx, grad):
        return torch.ones(grad.shape[0], *SHAPE, dtype=grad.dtype) * grad[:, :1, None, None], None


def test_pgd_returns_its_best_iterate_not_its_last():
    images = mid_range_images()
    peak = images + 0.05  # half-way to the corner at eps 0.1
    labels = torch.zeros(N, dtype=torch.long)

    # Class 1's logit is the bump: the image is misclassified while the bump is above 0.
    def classifier(x):
        return torch.cat([torch.zeros(len(x), 1, dtype=x.dtype), Bump.apply(x, peak)], 1)

    attack = PGD(classifier, eps=0.1, step_size=0.01, steps=20, random_start=False)
    adversarial = attack(images, labels)
    last = images + 0.1  # where the surrogate's steps end: the corner, correctly classified
    assert (classifier(last).argmax(1) == 0).all()
    assert (classifier(adversarial).argmax(1) == 1).all()
    torch.testing.assert_close(adversarial, peak)  # the best iterate is the bump's top


def test_restarts_find_a_narrow_region_that_one_random_start_misses():
    # A zero-gradient classifier wrong only where the pixel's start lands in the top tenth of
    # the eps-ball: one random start succeeds with probability 0.1, 20 with 1 - 0.9 ** 20.
    n = 4000
    images = torch.full((n, 1, 1, 1), 0.5, dtype=torch.float64)
    labels = torch.zeros(n, dtype=torch.long)

    def classifier(x):
        return torch.cat(
            [
                0 * x.flatten(1),  # in the graph, zero gradient
                torch.where(x.flatten(1) > 0.58, 1.0, -1.0),
            ],
            1,
        )

    fooled = {}
    for restarts in (1, 20):
        torch.manual_seed(0)
        attack = PGD(classifier, eps=0.1, step_size=0.01, steps=1, restarts=restarts)
        fooled[restarts] = (classifier(attack(images, labels)).argmax(1) == 1).double().mean()
    assert abs(fooled[1] - 0.1) < 0.02
    assert abs(fooled[20] - (1 - 0.9**20)) < 0.02
