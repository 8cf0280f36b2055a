"""torchattacks' attacks on the defended pipeline: AutoAttack (Croce & Hein, ICML 2020) and
its Square attack (Andriushchenko et al., ECCV 2020), run on whole batches with each image's
random draws its own.

torchattacks attacks an ``nn.Module``; ``PipelineModule`` makes one of any classifier of plain
images (for an encrypted scenario, ``model(encrypt(x))`` with the cipher's chosen backward),
keeping the network as a submodule so the library finds its device and can set eval mode.
The library draws its per-image randomness (APGD's random start, Square's initial stripes) for
the whole batch from torch's global generator, so an image's outcome would depend on which
images it was attacked with, and the cascade, which attacks only the images still unbroken,
would not reproduce full mode. ``OwnDraws`` gives each image those draws from a hash of its own
pixels and the attacker's seed (``lie_ray.attacks.seeding``) and leaves every draw the library
shares across the batch (Square's square positions and signs) to the global generator, which
the library seeds itself: with per-image draws out of its way, that stream is the same whatever
the batch. Everything else these attacks do is per image (eval-mode network, per-image losses,
step sizes and targets), so an image's outcome is its own, batched or alone. The draws are
keyed by pixels, not ids, because the library hands its inner runs bare subsets of the rows.
"""

from __future__ import annotations

import sys
import zlib
from unittest import mock

import numpy as np
import torch
import torchattacks

from lie_ray.attacks import seeding
from lie_ray.attacks.base import Classifier

N_CLASSES = 10


class PipelineModule(torch.nn.Module):
    def __init__(self, classify: Classifier, network: torch.nn.Module):
        super().__init__()
        self.network = network
        self.classify = classify
        self.eval()

    def train(self, mode: bool = True) -> PipelineModule:
        """Always eval mode. torchattacks restores the mode it found after every attack, and a
        fresh module starts in training mode: that would leave the defender's (shared) network
        with BatchNorm on batch statistics, and every later prediction wrong."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The scores of the image as deployed: 8-bit pixels (the attack works in the ball it
        is scored in, so rounding keeps every pixel within it), with a straight-through
        backward. The library's own success tests (APGD's best point, AutoAttack's hand-over
        from one attack to the next, Square's margin) are then the deployment's."""
        quantised = images + (torch.round(images * 255) / 255 - images).detach()
        return self.classify(quantised)


def pixel_keys(images: torch.Tensor) -> np.ndarray:
    """One 32-bit key per image, of its pixels alone (CRC-32 of its float32 bytes)."""
    rows = images.detach().to("cpu", torch.float32).contiguous().reshape(len(images), -1)
    return np.array([zlib.crc32(row.numpy().tobytes()) for row in rows], dtype=np.int64)


class OwnDraws:
    """Mixin for a torchattacks attack: in every inner run (``attack_single_run``, on the rows
    the library chose), a uniform draw with one row per image attacked comes from that image's
    own pixels, the attack's seed and the run's number; other draws go to torch as usual.
    Runs are numbered per attack object, so APGD-T's targets each get a fresh start; an image
    takes part in run n only if it took part in every run before it (it was not fooled yet),
    so its runs are numbered alike in any batch, and they start from 0 at every call.
    Only L-inf is covered: the library's L2 and L1 draws use ``randn``, left shared."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._runs = -1
        if self.norm != "Linf":
            raise ValueError(
                f"{type(self).__name__}: per-image draws cover norm='Linf' only, not {self.norm!r}"
            )

    def forward(self, images, labels):
        self._runs = -1
        return super().forward(images, labels)

    def attack_single_run(self, x, *args, **kwargs):
        return self._with_own_draws(super().attack_single_run, x, *args, **kwargs)

    def _with_own_draws(self, run, x, *args, **kwargs):
        self._runs += 1
        keys, number = pixel_keys(x), self._runs

        def rand(*size, **options):
            shape = tuple(size[0] if len(size) == 1 and not isinstance(size[0], int) else size)
            if len(shape) == x.dim() and shape[0] == len(x):
                return seeding.uniform(keys, self.seed, number, shape, x.device)
            return torch.rand(*size, **options)

        library = sys.modules[run.__func__.__module__]  # the module whose code draws
        with mock.patch.object(library, "torch", _TorchDrawing(rand)):
            return run(x, *args, **kwargs)


class _TorchDrawing:
    """torch, as one library module sees it during a run, with ``rand`` replaced."""

    def __init__(self, rand):
        self.rand = rand

    def __getattr__(self, name: str):
        return getattr(torch, name)


class APGD(OwnDraws, torchattacks.APGD):
    pass


class APGDT(OwnDraws, torchattacks.APGDT):
    pass


class FAB(OwnDraws, torchattacks.FAB):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.n_restarts != 1:  # its random restarts draw for a subset of the rows
            raise ValueError(f"FAB: per-image draws cover n_restarts=1 only, not {self.n_restarts}")

    def attack_single_run_targeted(self, x, *args, **kwargs):
        return self._with_own_draws(super().attack_single_run_targeted, x, *args, **kwargs)


class Square(OwnDraws, torchattacks.Square):
    pass


# Croce & Hein (ICML 2020) and their reference code (fra31/auto-attack, version "standard"):
# APGD-CE and APGD-T (DLR loss, 9 target classes) with 100 iterations and one restart each,
# FAB-T over 9 targets with 100 iterations, Square with 5000 queries. torchattacks'
# AutoAttack(version="standard") leaves its attacks at their default 10 steps, so the four
# are composed here with the reference settings spelled out.
STANDARD = {
    "apgd_steps": 100,
    "fab_steps": 100,
    "targets": N_CLASSES - 1,
    "square_queries": 5000,
    "restarts": 1,
}


def autoattack_settings(version: str, steps: int, queries: int) -> dict:
    """What an AutoAttack version runs, for the report and the results' provenance."""
    if version == "standard":
        return {"version": version, **STANDARD}
    return {
        "version": version,
        "apgd_steps": steps,
        "fab_steps": steps,
        "targets": 1,
        "square_queries": queries,
        "restarts": 1,
    }


SQUARE = "square"  # AutoAttack's part that follows no gradient (its own sanity check reads it)


class InTurn:
    """AutoAttack's composition (the reference's ``run_standard_evaluation``; torchattacks'
    ``MultiAttack``): each attack on the images the ones before it left unfooled, recording
    which part broke each image (``broken_by``, "" where none did), so that AutoAttack's own
    flag can be raised: Square breaking what the gradient attacks could not
    (``check_square_sr`` in the reference code) suggests masked gradients."""

    def __init__(self, module: torch.nn.Module, parts: dict[str, torchattacks.attack.Attack]):
        self.module, self.parts = module, parts

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, np.ndarray]:
        adversarial = images.clone()
        broken_by = np.full(len(images), "", dtype=object)
        left = torch.arange(len(images), device=images.device)
        for name, attack in self.parts.items():
            if len(left) == 0:
                break
            found = attack(images[left], labels[left]).detach()
            with torch.no_grad():
                fooled = self.module(found).argmax(1) != labels[left]
            adversarial[left[fooled]] = found[fooled]
            broken_by[left[fooled].cpu().numpy()] = name
            left = left[~fooled]
        return adversarial, broken_by


def autoattack(
    module: torch.nn.Module, eps: float, version: str, steps: int, queries: int, seed: int
) -> InTurn:
    """AutoAttack, L-inf: APGD-CE, APGD-T, FAB-T, then Square, each on the images the ones
    before it left unfooled. ``standard`` at Croce & Hein's settings; ``light`` with ``steps``
    iterations, the single most likely wrong class as target and ``queries`` Square queries."""
    run = autoattack_settings(version, steps, queries)
    common = {"norm": "Linf", "eps": eps, "seed": seed, "n_restarts": run["restarts"]}
    classes = run["targets"] + 1  # torchattacks targets its n_classes - 1 likeliest others
    return InTurn(
        module,
        {
            "apgd-ce": APGD(module, steps=run["apgd_steps"], loss="ce", **common),
            "apgd-t": APGDT(module, steps=run["apgd_steps"], n_classes=classes, **common),
            "fab-t": FAB(
                module, steps=run["fab_steps"], multi_targeted=True, n_classes=classes, **common
            ),
            SQUARE: square(module, eps, run["square_queries"], seed, rescale=version != "standard"),
        },
    )


def square(
    module: torch.nn.Module, eps: float, queries: int, seed: int, rescale: bool = True
) -> torchattacks.attack.Attack:
    """Square attack, L-inf, margin loss, p_init 0.8; its square-size schedule rescaled to
    ``queries`` (AutoAttack standard keeps the reference's own schedule for its 5000)."""
    return Square(
        module,
        norm="Linf",
        eps=eps,
        n_queries=queries,
        n_restarts=1,
        p_init=0.8,
        seed=seed,
        loss="margin",
        resc_schedule=rescale,
    )
