"""Which images each attack runs on, and the per-image worst case of each attacker.

A worst case is a union: an image counts as broken by an attacker if any attack that attacker
can run fools the model on it, at this epsilon or a smaller one (a perturbation within a
smaller ball lies in every larger one). So once an image is broken, the attacks still to run
for that attacker cannot change its verdict, and ``cascade`` mode skips them there: per
epsilon, ascending, the paper's three readings run on every image (Table I stays complete);
every other attack runs, cheapest first, only on the images its attacker has not broken yet.
``full`` mode runs every attack on every image. Both build the worst cases the same way, so
they agree exactly wherever each attack's outcome on an image does not depend on the other
images it is attacked with: every random draw is the image's own (PGD's starts by its id,
``lie_ray.attacks.seeding``; the library attacks' by its pixels, ``lie_ray.attacks.library``).
What is left is floating point: a batched kernel may round the last bit of an image's logits
differently at another batch size, and an attack's steps can grow that into another path (a
ReLU on its kink). ``bench/cascade.py`` counts the worst-case rows where the modes differ.

The attackers nest (keyless within with-key within channel), so an attack's own attacker is
the narrowest that can run it, and an image that attacker has broken is broken for the wider
ones too. Each worst case records what broke an image first (in ``RANK`` order, the same in
both modes) and at which epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lie_ray.evaluation.protocols import Outcome, attacker_evaluations
from lie_ray.evaluation.settings import CASCADE_ORDER, PAPER_READINGS, WORST_CASES

CLEAN = "clean"


@dataclass
class Plan:
    """The attacks of one scenario, in the order they run and the order unions take them."""

    names: list[str]
    encrypted: bool
    members: dict[str, list[str]] = field(init=False)  # per worst case, in rank order
    narrowest: dict[str, str] = field(init=False)  # per attack: its own attacker's worst case

    def __post_init__(self):
        self.narrowest = {}
        for worst_case in WORST_CASES:  # narrowest first
            united = attacker_evaluations(worst_case, self.encrypted)
            for name in self.names:
                if united is None or name in united:
                    self.narrowest.setdefault(name, worst_case)
        self.members = {
            worst_case: sorted((n for n in self.names if self.covers(worst_case, n)), key=self.rank)
            for worst_case in WORST_CASES
        }

    def covers(self, worst_case: str, name: str) -> bool:
        return WORST_CASES.index(self.narrowest[name]) <= WORST_CASES.index(worst_case)

    def rank(self, name: str) -> tuple[int, int, int]:
        """Narrowest attacker first; within it the paper's readings, then cheapest first."""
        stage = WORST_CASES.index(self.narrowest[name])
        if name in PAPER_READINGS:
            return stage, 0, PAPER_READINGS.index(name)
        return stage, 1, CASCADE_ORDER.index(name)

    def order(self) -> list[str]:
        """How the attacks run: the paper's readings (every image) first, then by rank."""
        return sorted(self.names, key=lambda n: (n not in PAPER_READINGS, self.rank(n)))


class Union:
    """One attacker's worst case over the images of a batch, carried across epsilons."""

    def __init__(self, clean: torch.Tensor, labels: torch.Tensor):
        self.labels = labels
        self.predictions = clean.clone()
        self.linf = torch.zeros(len(clean), device=clean.device)
        self.broken = (clean != labels).cpu().numpy()
        self.broken_by = np.where(self.broken, CLEAN, "").astype(object)
        self.broken_at = np.where(self.broken, 0.0, np.nan)

    def add(self, name: str, eps: float, rows: np.ndarray, outcome: Outcome) -> None:
        fooled = (outcome.predictions != self.labels[rows]).cpu().numpy()
        take = rows[fooled & ~self.broken[rows]]
        if len(take) == 0:
            return
        index = torch.from_numpy(take).to(self.predictions.device)
        within = torch.from_numpy(np.searchsorted(rows, take)).to(self.predictions.device)
        self.predictions[index] = outcome.predictions[within]
        self.linf[index] = outcome.linf[within]
        self.broken[take], self.broken_by[take], self.broken_at[take] = True, name, eps

    def outcome(self) -> Outcome:
        return Outcome(
            self.predictions.clone(),
            self.linf.clone(),
            broken_by=self.broken_by.copy(),
            broken_at=self.broken_at.copy(),
        )


def run(
    plan: Plan, epsilons, cascade: bool, clean: torch.Tensor, labels: torch.Tensor, attack
) -> list[tuple[str, float, np.ndarray, Outcome]]:
    """Every attack at every epsilon, and the worst cases: (name, eps, rows, outcome) with
    ``rows`` the batch rows the outcome covers (all of them but for cascaded attacks; the
    outcome is None where a cascaded attack found no image left).
    ``attack(name, eps, rows, done)`` runs one attack on those rows; ``done`` maps what ran
    at this epsilon to (rows, outcome)."""
    every = np.arange(len(clean))
    unions = {worst_case: Union(clean, labels) for worst_case in WORST_CASES}
    out = []
    for eps in sorted(epsilons):
        if eps == 0:  # no perturbation: every attack's outcome is the clean prediction
            zero = Outcome(clean, torch.zeros(len(clean), device=clean.device))
            out += [(name, eps, every, zero) for name in plan.names]
            out += [(w, eps, every, unions[w].outcome()) for w in WORST_CASES]
            continue
        provisional = {w: union.broken.copy() for w, union in unions.items()}
        done: dict[str, tuple[np.ndarray, Outcome]] = {}
        for name in plan.order():
            rows = (
                every
                if not cascade or name in PAPER_READINGS
                else np.flatnonzero(~provisional[plan.narrowest[name]])
            )
            outcome = attack(name, eps, rows, done) if len(rows) else None
            done[name] = (rows, outcome)  # None: no image left to attack
            if outcome is None:
                continue
            fooled = rows[(outcome.predictions != labels[rows]).cpu().numpy()]
            for worst_case in WORST_CASES:
                if plan.covers(worst_case, name):
                    provisional[worst_case][fooled] = True
        for worst_case, union in unions.items():
            for name in plan.members[worst_case]:
                rows, outcome = done[name]
                if outcome is not None:
                    union.add(name, eps, rows, outcome)
        out += [(name, eps, rows, outcome) for name, (rows, outcome) in done.items()]
        out += [(w, eps, every, unions[w].outcome()) for w in WORST_CASES]
    return out
