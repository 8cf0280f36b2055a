"""PGD through a classifier of plain images, scored on the deployed pipeline: the step most of
the catalogue's attacks take (through the pipeline with a chosen backward, an EOT ensemble, a
stand-in, a plain model, a recovered key), and what an attack from outside lie_ray takes too
(``examples/wrong_key_attack``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lie_ray.attacks.base import Classifier
from lie_ray.attacks.outcome import Batch, Outcome, scored
from lie_ray.attacks.pgd import PGD

if TYPE_CHECKING:
    from lie_ray.attacks.views import Keyless
    from lie_ray.evaluation.settings import EvalSettings


def pgd_cost(settings: EvalSettings, alone: bool = False) -> dict[str, float]:
    """One PGD, every restart: a forward-and-backward per step, a forward per restart to rank
    its last iterate, and one to score the deployed image."""
    runs = settings.pgd_restarts
    return {"attack": settings.pgd_steps * runs, "forward": runs + 1}


def through(
    classifier: Classifier, view: Keyless, batch: Batch, eps: float, settings: EvalSettings
) -> Outcome:
    """PGD against ``classifier`` (the pipeline with a chosen backward, or a stand-in for
    it), every restart, scored on the real pipeline as deployed."""
    attack = PGD(
        classifier,
        eps,
        settings.step_size(eps),
        settings.pgd_steps,
        restarts=settings.pgd_restarts,
        seed=settings.attacker_seed,
    )
    return scored(view.oracle, batch, attack(batch.images, batch.labels, ids=batch.ids), eps)
