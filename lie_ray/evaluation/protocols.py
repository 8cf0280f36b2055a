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
``eot``              a keyless attacker: gradients averaged over random keys of its own,
                     drawn afresh at every step (EOT).
``transfer``         PGD against the Plain model, then encrypted with the defender's key.
``gradient-free``    torchattacks' Square attack on the full pipeline (scores only).
``pba``              a keyless attacker with the network's weights: a stand-in for the keyed
                     transform fitted to the pipeline's predictions on its own images
                     (parametric bypass approximation, Rusu et al. 2022), PGD through it.
``recovered-key-k``  the key recovered from k leaked (plain, encrypted) pairs of the
                     attacker's own images (lie_ray.privacy.known_plaintext), then PGD with
                     it: the robustness left after k leaked pairs (fixed keys, and the
                     transforms whose key pairs reveal).
``autoattack``       AutoAttack (APGD-CE, APGD-T, FAB-T, Square; torchattacks' attacks at
                     Croce & Hein's settings), true cipher forward, BPDA (both nibbles)
                     backward.

Ciphertext-space attack (a different attacker, who edits the encrypted image in transit):

``encrypted-input``  PGD on the encrypted image the network sees, eps measured in ciphertext
                     space. NOT a bound on plain-image attacks either way: an eps step on a
                     plain pixel can move a ciphertext byte by far more than eps (a changed low
                     nibble lands in some byte's high half), and ciphertext edits need not be
                     reachable from the plain image.

Every adversarial image is scored as the deployed pipeline receives it: 8-bit pixels, within
eps of the plain image exactly (``deployed``). Evaluations that do not apply (BPDA on Plain) are
not run. Per example, each worst case starts from the clean outcome and takes the union over
one attacker's evaluations (``lie_ray.evaluation.settings``): ``worst-case-keyless`` over the
keyless ones, ``worst-case`` over every plain-image attack, ``worst-case-channel`` over all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from lie_ray.attacks import PGD
from lie_ray.attacks.library import PipelineModule, square
from lie_ray.attacks.library import autoattack as make_autoattack
from lie_ray.evaluation.defender import AttackerKeys, Defender, eot_classifier
from lie_ray.evaluation.settings import KEYLESS, PLAIN_SPACE, RECOVERED_K, RECOVERED_KEY, SINGLE_RUN


@dataclass
class Outcome:
    """Per-example predictions on the adversarial images, and the L-inf perturbation applied."""

    predictions: torch.Tensor
    linf: torch.Tensor
    # Worst cases only: per example the member that broke it first ("clean": it was
    # misclassified already, "": unbroken) and at which epsilon (NaN: unbroken).
    broken_by: np.ndarray | None = None
    broken_at: np.ndarray | None = None
    # An earlier run's outcome handed on (recovered-key-k with a smaller k's key): it cost no
    # passes, so the cost model, which prices what ran, leaves these rows out.
    reused: bool = False

    def __post_init__(self):
        # A record of what happened, never part of a graph: an attack that hands back a tensor
        # still attached to autograd must not leak it into the tables.
        self.predictions, self.linf = self.predictions.detach(), self.linf.detach()

    def subset(self, rows: np.ndarray) -> Outcome:
        index = torch.from_numpy(rows).to(self.predictions.device)
        return Outcome(self.predictions[index], self.linf[index])


@dataclass
class Batch:
    images: torch.Tensor  # plain, float NCHW in [0, 1]
    labels: torch.Tensor
    ids: np.ndarray

    def subset(self, rows: np.ndarray) -> Batch:
        """The batch's ``rows``: what a cascaded attack gets (ids and labels go with them)."""
        index = torch.from_numpy(rows).to(self.images.device)
        return Batch(self.images[index].contiguous(), self.labels[index], self.ids[rows])


def deployed(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """The adversarial image as the deployed pipeline receives it: 8-bit pixels, each within
    eps of the 8-bit plain image. Rounding the attack's float image instead would move a pixel
    by up to eps + 0.5/255 (26/255 at eps 0.1); the perturbation is rounded to whole levels
    and clipped to the floor(255 * eps) levels that eps allows."""
    levels = math.floor(eps * 255 + 1e-6)
    plain = torch.round(images * 255)
    delta = torch.clamp(torch.round((adversarial - images) * 255), -levels, levels)
    return torch.clamp(plain + delta, 0, 255) / 255


def plain_image_attack(
    defender: Defender, batch: Batch, adversarial: torch.Tensor, eps: float
) -> Outcome:
    adversarial = deployed(adversarial.detach(), batch.images, eps)
    return Outcome(
        defender.predict(adversarial, batch.ids),
        (adversarial - batch.images).abs().flatten(1).amax(1),
    )


def restarts(name: str, settings) -> int:
    return 1 if name in SINGLE_RUN else settings.pgd_restarts


def through(
    classifier, defender: Defender, batch: Batch, eps: float, settings, name: str
) -> Outcome:
    """PGD against ``classifier`` (the pipeline with a chosen backward, or a stand-in for
    it), with ``name``'s restarts, scored on the real pipeline as deployed."""
    attack = PGD(
        classifier,
        eps,
        settings.step_size(eps),
        settings.pgd_steps,
        restarts=restarts(name, settings),
        seed=settings.attacker_seed,
    )
    return plain_image_attack(
        defender, batch, attack(batch.images, batch.labels, ids=batch.ids), eps
    )


def pgd_through_cipher(
    defender: Defender, batch: Batch, eps: float, settings, backward: str | None, name: str
) -> Outcome:
    """PGD on the plain image, true cipher forward, the chosen backward ('none': autograd)."""
    return through(defender.classifier(batch.ids, backward), defender, batch, eps, settings, name)


def white_box(defender: Defender, batch: Batch, eps: float, settings) -> Outcome:
    """PGD with all the attacker could know: the key, and the transform's own backward (its
    true gradient, or its default BPDA surrogate). The sanity checks' reference attack."""
    return pgd_through_cipher(defender, batch, eps, settings, None, "white-box")


def pgd(defender, batch, eps, settings, context) -> Outcome:
    return pgd_through_cipher(defender, batch, eps, settings, "none", "pgd")


def bpda_identity(defender, batch, eps, settings, context) -> Outcome:
    return pgd_through_cipher(defender, batch, eps, settings, "identity", "bpda-identity")


def bpda(defender, batch, eps, settings, context) -> Outcome:
    """The worst over surrogates; reuses this batch's ``bpda-identity`` when it already ran."""
    identity = context.get("done", {}).get("bpda-identity")
    outcomes = [identity or bpda_identity(defender, batch, eps, settings, context)]
    outcomes += [
        pgd_through_cipher(defender, batch, eps, settings, backward, "bpda")
        for backward in ("bpda-high", "bpda-both")
    ]
    return worst_of(outcomes, batch.labels)


def eot(defender, batch, eps, settings, context) -> Outcome:
    keys = AttackerKeys(defender.key.spec, settings.eot_keys, settings.attacker_seed)
    return through(eot_classifier(defender.model, keys), defender, batch, eps, settings, "eot")


def transfer(defender, batch, eps, settings, context) -> Outcome:
    return through(context["plain_model"], defender, batch, eps, settings, "transfer")


def pba(defender, batch, eps, settings, context) -> Outcome:
    return through(
        lambda plain: defender.model(context["bypass"](plain)),
        defender,
        batch,
        eps,
        settings,
        "pba",
    )


def recovered_key(k: int):
    def protocol(defender, batch, eps, settings, context) -> Outcome:
        cipher = context["recovered"][k]
        fewer = [j for j in RECOVERED_K if j < k and context["recovered"][j] is cipher]
        reused = context.get("done", {}).get(f"recovered-key-{fewer[0]}") if fewer else None
        if reused is not None:  # the same key, the same seeds: the same attack, already run
            return replace(reused, reused=True)
        return through(
            lambda plain: defender.model(cipher.with_grad(plain, None)),
            defender,
            batch,
            eps,
            settings,
            f"recovered-key-{k}",
        )

    return protocol


def encrypted_pgd(
    defender: Defender, batch: Batch, eps: float, settings
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on the network alone, from the encrypted image: (encrypted, adversarial encrypted)."""
    with torch.no_grad():
        encrypted = defender.encrypt(batch.images, batch.ids)
    attack = PGD(
        defender.model,
        eps,
        settings.step_size(eps),
        settings.pgd_steps,
        seed=settings.attacker_seed,
    )
    return encrypted, attack(encrypted, batch.labels, ids=batch.ids)


def encrypted_input(defender, batch, eps, settings, context) -> Outcome:
    encrypted, adversarial = encrypted_pgd(defender, batch, eps, settings)
    with torch.no_grad():
        predictions = defender.model(adversarial).argmax(1)
    return Outcome(predictions, (adversarial - encrypted).abs().flatten(1).amax(1))


def paper_literal(defender, batch, eps, settings, context) -> Outcome:
    """The noise PGD finds on the encrypted image, added once to the plain image."""
    encrypted, adversarial = encrypted_pgd(defender, batch, eps, settings)
    noise = torch.clamp(adversarial - encrypted, -eps, eps)
    return plain_image_attack(defender, batch, torch.clamp(batch.images + noise, 0, 1), eps)


def library_attack(
    defender: Defender, batch: Batch, eps: float, backward: str, settings, attack_for
) -> Outcome:
    """Run a library attack (``attack_for(module)`` builds it) on the batch, one call per key.
    The library queries arbitrary subsets of the rows it is given, so its module cannot key
    rows by id: each call holds the rows of one key (every row under the fixed policy, an id
    group under the grouped ones, one image under per-image keys). Each image's random draws
    are its own (``lie_ray.attacks.library``), so its outcome does not depend on the rows it
    was attacked with. Library attacks may hand back tensors still attached to their graph:
    detached here."""
    adversarial = batch.images.clone()
    for rows in defender.key_groups(batch.ids):
        module = PipelineModule(
            defender.single_key_classifier(batch.ids[rows[0]], backward), defender.model
        )
        index = torch.from_numpy(rows).to(batch.images.device)
        adversarial[index] = attack_for(module)(
            batch.images[index].contiguous(), batch.labels[index]
        ).detach()
    return plain_image_attack(defender, batch, adversarial, eps)


def gradient_free(defender, batch, eps, settings, context) -> Outcome:
    """Square attack (scores only: the backward pass is never used)."""
    return library_attack(
        defender,
        batch,
        eps,
        "none",
        settings,
        lambda module: square(module, eps, settings.square_queries, settings.attacker_seed),
    )


def autoattack(defender, batch, eps, settings, context) -> Outcome:
    return library_attack(
        defender,
        batch,
        eps,
        "bpda-both",
        settings,
        lambda module: make_autoattack(
            module,
            eps,
            settings.autoattack,
            settings.autoattack_steps,
            settings.square_queries,
            settings.attacker_seed,
        ),
    )


# In EVALUATIONS' order: bpda-identity runs before bpda, which reuses it.
PROTOCOLS = {
    "pgd": pgd,
    "paper-literal": paper_literal,
    "bpda-identity": bpda_identity,
    "bpda": bpda,
    "eot": eot,
    "transfer": transfer,
    "gradient-free": gradient_free,
    "autoattack": autoattack,
    "pba": pba,
    **{name: recovered_key(k) for k, name in zip(RECOVERED_K, RECOVERED_KEY)},
    "encrypted-input": encrypted_input,
}
ENCRYPTED_ONLY = {
    "paper-literal",
    "bpda-identity",
    "bpda",
    "eot",
    "transfer",
    "pba",
    *RECOVERED_KEY,
    "encrypted-input",
}


def applicable(
    name: str, encrypted: bool, has_plain_model: bool, key_recoverable: bool = False
) -> bool:
    """``key_recoverable``: one key serves every image (the fixed policy) and the transform's
    key can be recovered from pairs, so the recovered-key attacks apply."""
    if name in ENCRYPTED_ONLY and not encrypted:
        return False
    if name in RECOVERED_KEY:
        return key_recoverable
    return name != "transfer" or has_plain_model


def attacker_evaluations(worst_case: str, encrypted: bool) -> tuple[str, ...] | None:
    """The evaluations one worst case unites (None: every evaluation that ran). Without a key
    there is nothing to withhold, so keyless is every plain-image attack."""
    if worst_case == "worst-case-keyless":
        return KEYLESS if encrypted else PLAIN_SPACE
    return PLAIN_SPACE if worst_case == "worst-case" else None


def worst_of(outcomes: list[Outcome], labels: torch.Tensor) -> Outcome:
    """Per example, the first outcome that fools the model (else the first one). Callers put
    the clean outcome first, so an image misclassified already counts with its zero
    perturbation, whatever the attacks did."""
    predictions, linf = outcomes[0].predictions.clone(), outcomes[0].linf.clone()
    fooled = predictions != labels
    for outcome in outcomes[1:]:
        take = ~fooled & (outcome.predictions != labels)
        predictions[take], linf[take] = outcome.predictions[take], outcome.linf[take]
        fooled |= take
    return Outcome(predictions, linf)
