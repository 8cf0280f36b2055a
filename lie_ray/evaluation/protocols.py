"""The evaluations, by name. Each takes a batch of PLAIN test images and returns what the
defended pipeline predicts on its adversarial version, and the perturbation it really applied.

The paper's protocol ("we generated adversarial noise by PGD, added the noise to the test
images and then, encrypted them") has more than one reading; each runs under its own name.

Plain-image attacks (the paper's threat model: the plain image moves within eps, then it is
encrypted with the defender's key and classified):

``pgd``              reading 1 of the paper: PGD on the plain image through the true cipher
                     with plain autograd (whose gradient is zero: Athalye et al. 2018 call this
                     obfuscated gradients, so only the random start acts).
``paper-literal``    reading 2: PGD on the network's own input (the encrypted image, with the
                     defender's key); the noise found, within eps, is added ONCE to the plain
                     image, which is then encrypted and classified.
``bpda-identity``    reading 3: PGD on the plain image, true cipher forward, the identity as the
                     cipher's backward (the gradient at the encrypted image applied to the plain
                     one; what the authors' later key-defence code did).
``bpda``             per example the worst of PGD with each BPDA surrogate backward: identity,
                     high nibble, both nibbles.
``eot``              a keyless attacker: gradients averaged over random keys of its own (EOT).
``transfer``         PGD against the Plain model, then encrypted with the defender's key.
``gradient-free``    torchattacks' Square attack on the full pipeline (scores only).
``autoattack``       torchattacks' AutoAttack (APGD-CE, APGD-T, FAB-T, Square), true cipher
                     forward, BPDA (both nibbles) backward.

Ciphertext-space attack (a different attacker, who edits the encrypted image in transit):

``encrypted-input``  PGD on the encrypted image the network sees, eps measured in ciphertext
                     space. NOT a bound on plain-image attacks either way: an eps step on a
                     plain pixel can move a ciphertext byte by far more than eps (a changed low
                     nibble lands in some byte's high half), and ciphertext edits need not be
                     reachable from the plain image.

Evaluations that do not apply (BPDA on Plain) are not run. ``worst-case`` is formed per
example over the plain-image attacks, ``worst-case-channel`` over all of them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lie_ray.attacks import PGD
from lie_ray.attacks.library import PipelineModule, autoattack as make_autoattack, square
from lie_ray.evaluation.defender import Defender, eot_classifier


@dataclass
class Outcome:
    """Per-example predictions on the adversarial images, and the L-inf perturbation applied."""

    predictions: torch.Tensor
    linf: torch.Tensor

    def __post_init__(self):
        # A record of what happened, never part of a graph: an attack that hands back a tensor
        # still attached to autograd must not leak it into the tables.
        self.predictions, self.linf = self.predictions.detach(), self.linf.detach()


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


def pgd_through_cipher(defender: Defender, batch: Batch, eps: float, settings, backward: str
                       ) -> Outcome:
    """PGD on the plain image, true cipher forward, the chosen backward ('none': autograd)."""
    attack = PGD(defender.classifier(batch.ids, backward), eps, settings.step_size(eps),
                 settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def pgd(defender, batch, eps, settings, context) -> Outcome:
    return pgd_through_cipher(defender, batch, eps, settings, "none")


def bpda_identity(defender, batch, eps, settings, context) -> Outcome:
    return pgd_through_cipher(defender, batch, eps, settings, "identity")


def bpda(defender, batch, eps, settings, context) -> Outcome:
    """The worst over surrogates; reuses this batch's ``bpda-identity`` when it already ran."""
    identity = context.get("done", {}).get("bpda-identity")
    outcomes = [identity or bpda_identity(defender, batch, eps, settings, context)]
    outcomes += [pgd_through_cipher(defender, batch, eps, settings, backward)
                 for backward in ("bpda-high", "bpda-both")]
    return worst_of(outcomes, batch.labels)


def eot(defender, batch, eps, settings, context) -> Outcome:
    attack = PGD(eot_classifier(defender.model, context["eot_ciphers"]), eps,
                 settings.step_size(eps), settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def transfer(defender, batch, eps, settings, context) -> Outcome:
    attack = PGD(context["plain_model"], eps, settings.step_size(eps), settings.pgd_steps)
    return plain_image_attack(defender, batch, attack(batch.images, batch.labels))


def encrypted_pgd(defender: Defender, batch: Batch, eps: float, settings
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on the network alone, from the encrypted image: (encrypted, adversarial encrypted)."""
    with torch.no_grad():
        encrypted = defender.encrypt(batch.images, batch.ids)
    attack = PGD(defender.model, eps, settings.step_size(eps), settings.pgd_steps)
    return encrypted, attack(encrypted, batch.labels)


def encrypted_input(defender, batch, eps, settings, context) -> Outcome:
    encrypted, adversarial = encrypted_pgd(defender, batch, eps, settings)
    with torch.no_grad():
        predictions = defender.model(adversarial).argmax(1)
    return Outcome(predictions, (adversarial - encrypted).abs().flatten(1).amax(1))


def paper_literal(defender, batch, eps, settings, context) -> Outcome:
    """The noise PGD finds on the encrypted image, added once to the plain image."""
    encrypted, adversarial = encrypted_pgd(defender, batch, eps, settings)
    noise = torch.clamp(adversarial - encrypted, -eps, eps)
    return plain_image_attack(defender, batch, torch.clamp(batch.images + noise, 0, 1))


def per_key_group(defender: Defender, batch: Batch, backward: str, attack_for) -> Outcome:
    """Run a library attack one key group at a time (it queries ever smaller subsets of rows,
    which is only safe when every row shares one key); ``attack_for(module)`` builds it.
    Library attacks may hand back tensors still attached to their graph: detached here."""
    adversarial = batch.images.clone()
    for rows in defender.key_groups(batch.ids):
        module = PipelineModule(defender.single_key_classifier(int(batch.ids[rows[0]]), backward),
                                defender.model)
        index = torch.from_numpy(rows).to(batch.images.device)
        adversarial[index] = attack_for(module)(batch.images[index].contiguous(),
                                                batch.labels[index]).detach()
    return plain_image_attack(defender, batch, adversarial)


def gradient_free(defender, batch, eps, settings, context) -> Outcome:
    """Square attack (scores only: the backward pass is never used)."""
    return per_key_group(defender, batch, "none", lambda module: square(
        module, eps, settings.square_queries, settings.attacker_seed))


def autoattack(defender, batch, eps, settings, context) -> Outcome:
    return per_key_group(defender, batch, "bpda-both", lambda module: make_autoattack(
        module, eps, settings.autoattack, settings.autoattack_steps, settings.square_queries,
        settings.attacker_seed))


# In EVALUATIONS' order: bpda-identity runs before bpda, which reuses it.
PROTOCOLS = {"pgd": pgd, "paper-literal": paper_literal, "bpda-identity": bpda_identity,
             "bpda": bpda, "eot": eot, "transfer": transfer, "gradient-free": gradient_free,
             "autoattack": autoattack, "encrypted-input": encrypted_input}
ENCRYPTED_ONLY = {"paper-literal", "bpda-identity", "bpda", "eot", "transfer",
                  "encrypted-input"}


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
