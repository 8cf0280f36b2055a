"""The channel attacker: PGD on the encrypted image the network sees, eps measured in
ciphertext space. NOT a bound on plain-image attacks either way: an eps step on a plain pixel
can move a ciphertext byte by far more than eps (a changed low nibble lands in some byte's high
half), and ciphertext edits need not be reachable from the plain image."""

from __future__ import annotations

import torch

from lie_ray.attacks.catalogue.common import encrypted_pgd
from lie_ray.attacks.outcome import CIPHER, Outcome, deployed
from lie_ray.attacks.pgd_through import pgd_cost
from lie_ray.attacks.spec import AttackSpec


def encrypted_input(view, batch, eps, settings):
    """Scored as the network receives it: an 8-bit ciphertext within eps of the 8-bit one."""
    encrypted, adversarial = encrypted_pgd(view.pipeline, batch, eps, settings)
    adversarial = deployed(adversarial.detach(), encrypted, eps)
    with torch.no_grad():
        predictions = view.pipeline.model(adversarial).argmax(1)
    linf = (adversarial - encrypted).abs().flatten(1).amax(1)
    return Outcome(predictions, linf, adversarial=adversarial, space=CIPHER)


SPECS = (
    AttackSpec(
        name="encrypted-input",
        tier="channel",
        run=encrypted_input,
        cost=pgd_cost,
        needs=frozenset({"transform"}),
        restarts=False,
        cascade_rank=80,
        label="encrypted-input",
        colour="tab:purple",
        description="PGD on the ciphertext in transit, eps in ciphertext space",
    ),
)
