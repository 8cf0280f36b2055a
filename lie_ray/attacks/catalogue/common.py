"""What several built-in attacks share beyond ``lie_ray.attacks.pgd_through``: PGD on the
ciphertext, and a library attack run one key group at a time."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

from lie_ray.attacks.base import Classifier
from lie_ray.attacks.library import PipelineModule
from lie_ray.attacks.outcome import Batch, Outcome, scored
from lie_ray.attacks.pgd import PGD

if TYPE_CHECKING:
    from lie_ray.attacks.pipeline import Defender
    from lie_ray.attacks.views import Keyless
    from lie_ray.evaluation.settings import EvalSettings


def encrypted_pgd(
    pipeline: Defender, batch: Batch, eps: float, settings: EvalSettings
) -> tuple[torch.Tensor, torch.Tensor]:
    """PGD on the network alone, from the encrypted image: (encrypted, adversarial encrypted)."""
    with torch.no_grad():
        encrypted = pipeline.encrypt(batch.images, batch.ids)
    attack = PGD(
        pipeline.model,
        eps,
        settings.step_size(eps),
        settings.pgd_steps,
        restarts=settings.pgd_restarts,
        seed=settings.attacker_seed,
    )
    return encrypted, attack(encrypted, batch.labels, ids=batch.ids)


def library_attack(
    view: Keyless,
    classifier_for: Callable[[int], Classifier],
    batch: Batch,
    eps: float,
    attack_for: Callable[[torch.nn.Module], Callable],
) -> Outcome:
    """Run a library attack (``attack_for(module)`` builds it) on the batch, one call per key.
    The library queries arbitrary subsets of the rows it is given, so its module cannot key
    rows by id: each call holds the rows of one key (every row under the fixed policy, an id
    group under the grouped ones, one image under per-image keys), classified as
    ``classifier_for(a representative id)``. Each image's random draws are its own
    (``lie_ray.attacks.library``), so its outcome does not depend on the rows it was attacked
    with. Library attacks may hand back tensors still attached to their graph: detached.
    A composite attack (AutoAttack, ``library.InTurn``) also hands back which of its parts
    broke each image: the outcome's ``broken_by``, where the deployed pipeline was fooled."""
    adversarial = batch.images.clone()
    parts = None
    for rows in view.key_groups(batch.ids):
        module = PipelineModule(classifier_for(batch.ids[rows[0]]), view.network)
        index = torch.from_numpy(rows).to(batch.images.device)
        found = attack_for(module)(batch.images[index].contiguous(), batch.labels[index])
        if isinstance(found, tuple):
            found, broken_by = found
            parts = np.full(len(batch.ids), "", dtype=object) if parts is None else parts
            parts[rows] = broken_by
        adversarial[index] = found.detach()
    outcome = scored(view.oracle, batch, adversarial, eps)
    if parts is not None:
        fooled = (outcome.predictions != batch.labels).cpu().numpy()
        outcome.broken_by = np.where(fooled, parts, "").astype(object)
    return outcome
