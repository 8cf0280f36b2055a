"""The evaluations, by name. Each takes a batch of PLAIN test images and returns what the
defended pipeline predicts on its adversarial version, and the perturbation it really applied.

``pgd``              the paper's protocol: PGD on the plain image through the true cipher with
                     plain autograd (whose gradient is zero: Athalye et al. 2018 call this
                     obfuscated gradients).
``bpda``             PGD with the true cipher forward and each BPDA surrogate backward; per
                     example, the worst over surrogates counts.
``eot``              a keyless attacker: gradients averaged over random keys of its own (EOT).
``transfer``         PGD against the Plain model, then encrypted with the defender's key.
``encrypted-input``  PGD on the encrypted image the network sees: the network alone, an upper
                     bound on what any plain-image attack can do.
``gradient-free``    Square attack on the full pipeline (scores only, no gradients).

Evaluations that do not apply (BPDA on Plain) are not run. The worst case over all of them is
formed per example by ``worst_case``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lie_ray.attacks import PGD, SquareAttack
from lie_ray.evaluation.defender import Defender, eot_classifier


@dataclass
class Outcome:
    """Per-example predictions on the adversarial images, and the L-inf perturbation applied."""

    predictions: torch.Tensor
    linf: torch.Tensor


@dataclass
class Batch:
    images: torch.Tensor  # plain, float NCHW in [0, 1]
    labels: torch.Tensor
    ids: np.ndarray


def applied_linf(defender: Defender, adversarial: torch.Tensor, images: torch.Tensor
                 ) -> torch.Tensor:
    """The perturbation the pipeline really consumes: an encrypted pipeline quantises to 8
    bits before encrypting, which may add up to 0.5/255 to what the attack chose."""
    if defender.encrypted:
        adversarial = torch.floor(adversarial * 255 + 0.5) / 255
    return (adversarial - images).abs().flatten(1).amax(1)


def plain_image_attack(defender: Defender, batch: Batch, adversarial: torch.Tensor) -> Outcome:
    return Outcome(defender.predict(adversarial, batch.ids),
                   applied_linf(defender, adversarial, batch.images))


def pgd(defender, batch, eps, settings, context) -> Outcome:
    attack = PGD(defender.classifier(batch.ids, "none"), eps, settings.step_size(eps),
                 settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def bpda(defender, batch, eps, settings, context) -> Outcome:
    outcomes = []
    for backward in ("bpda-high", "bpda-both"):
        attack = PGD(defender.classifier(batch.ids, backward), eps, settings.step_size(eps),
                     settings.pgd_steps)
        outcomes.append(plain_image_attack(defender, batch, attack(batch.images, batch.labels)))
    return worst_of(outcomes, batch.labels)


def eot(defender, batch, eps, settings, context) -> Outcome:
    attack = PGD(eot_classifier(defender.model, context["eot_ciphers"]), eps,
                 settings.step_size(eps), settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def transfer(defender, batch, eps, settings, context) -> Outcome:
    attack = PGD(context["plain_model"], eps, settings.step_size(eps), settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def encrypted_input(defender, batch, eps, settings, context) -> Outcome:
    with torch.no_grad():
        encrypted = defender.encrypt(batch.images, batch.ids)
    attack = PGD(defender.model, eps, settings.step_size(eps), settings.pgd_steps)
    adversarial = attack(encrypted, batch.labels)
    with torch.no_grad():
        predictions = defender.model(adversarial).argmax(1)
    return Outcome(predictions, (adversarial - encrypted).abs().flatten(1).amax(1))


def gradient_free(defender, batch, eps, settings, context) -> Outcome:
    """Square attack, one sub-key group at a time: it queries ever smaller subsets of rows
    (those not yet fooled), which is only safe when every row shares one key."""
    adversarial = batch.images.clone()
    for rows in defender.key_groups(batch.ids):
        attack = SquareAttack(defender.single_key_classifier(int(batch.ids[rows[0]])), eps,
                              queries=settings.square_queries, seed=settings.attacker_seed)
        index = torch.from_numpy(rows).to(batch.images.device)
        adversarial[index] = attack(batch.images[index], batch.labels[index])
    return plain_image_attack(defender, batch, adversarial)


PROTOCOLS = {"pgd": pgd, "bpda": bpda, "eot": eot, "transfer": transfer,
             "encrypted-input": encrypted_input, "gradient-free": gradient_free}
ENCRYPTED_ONLY = {"bpda", "eot", "transfer", "encrypted-input"}


def applicable(name: str, encrypted: bool, has_plain_model: bool) -> bool:
    if name in ENCRYPTED_ONLY and not encrypted:
        return False
    return name != "transfer" or has_plain_model


def worst_of(outcomes: list[Outcome], labels: torch.Tensor) -> Outcome:
    """Per example, the first outcome that fools the model (else the first one)."""
    predictions, linf = outcomes[0].predictions.clone(), outcomes[0].linf.clone()
    fooled = predictions != labels
    for outcome in outcomes[1:]:
        take = ~fooled & (outcome.predictions != labels)
        predictions[take], linf[take] = outcome.predictions[take], outcome.linf[take]
        fooled |= take
    return Outcome(predictions, linf)
