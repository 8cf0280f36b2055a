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

The attackers nest (``lie_ray.attacks.spec.WORST_CASES``: keyless within leaked within with-key
within channel), so an attack's own attacker is the narrowest worst case that unites its tier,
and an image that attacker has broken is broken for the wider ones too. Each worst case records what
broke an image first (in ``Plan.rank`` order, the same in both modes) and at which epsilon.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from lie_ray.attacks.outcome import PLAIN, Outcome
from lie_ray.attacks.spec import WORST_CASE_NAMES, WORST_CASES, AttackSpec, united_tiers

CLEAN = "clean"


class Row(NamedTuple):
    """One evaluation's outcome at one epsilon on the batch rows it ``covered`` (all of them
    but for a cascaded attack; ``outcome`` None where it found no image left to attack)."""

    evaluation: str
    epsilon: float
    covered: np.ndarray
    outcome: Outcome | None


@dataclass
class Plan:
    """The attacks of one scenario, in the order they run and the order unions take them."""

    specs: list[AttackSpec]
    encrypted: bool
    members: dict[str, list[str]] = field(init=False)  # per worst case, in rank order
    narrowest: dict[str, str] = field(init=False)  # per attack: its own attacker's worst case

    def __post_init__(self):
        self.narrowest = {}
        self.by_name = {spec.name: spec for spec in self.specs}
        for worst_case in WORST_CASES:  # narrowest first
            for spec in self.specs:
                if spec.tier in united_tiers(worst_case, self.encrypted):
                    self.narrowest.setdefault(spec.name, worst_case.name)
        self.members = {
            worst_case: sorted(
                (s.name for s in self.specs if self.covers(worst_case, s.name)), key=self.rank
            )
            for worst_case in WORST_CASE_NAMES
        }

    @property
    def names(self) -> list[str]:
        return [spec.name for spec in self.specs]

    def covers(self, worst_case: str, name: str) -> bool:
        return WORST_CASE_NAMES.index(self.narrowest[name]) <= WORST_CASE_NAMES.index(worst_case)

    def reads_every_image(self, name: str) -> bool:
        """The paper's readings run on every image in either mode (Table I stays complete)."""
        return self.by_name[name].role == "paper-reading"

    def rank(self, name: str) -> tuple[int, int, float, int]:
        """Narrowest attacker first; within it the paper's readings, then cheapest first
        (``cascade_rank``; ties by registration)."""
        stage = WORST_CASE_NAMES.index(self.narrowest[name])
        spec = self.by_name[name]
        return stage, not self.reads_every_image(name), spec.cascade_rank, self.names.index(name)

    def order(self) -> list[str]:
        """How the attacks run: the paper's readings (every image) first, then by rank."""
        return sorted(self.names, key=lambda n: (not self.reads_every_image(n), self.rank(n)))


class Union:
    """One attacker's worst case over the images of a batch, carried across epsilons, with
    the image that decided each: the plain image until an attack breaks it, then that
    attack's adversarial image (``space`` "" where the attack kept none)."""

    def __init__(self, clean: torch.Tensor, labels: torch.Tensor, images: torch.Tensor):
        self.labels = labels
        self.predictions = clean.clone()
        self.linf = torch.zeros(len(clean), device=clean.device)
        self.images = images.clone()
        self.space = np.full(len(clean), PLAIN, dtype=object)
        self.broken = (clean != labels).cpu().numpy()
        self.broken_by = np.where(self.broken, CLEAN, "").astype(object)
        self.broken_at = np.where(self.broken, 0.0, np.nan)

    def add(self, name: str, eps: float, covered: np.ndarray, outcome: Outcome) -> None:
        fooled = (outcome.predictions != self.labels[covered]).cpu().numpy()
        take = covered[fooled & ~self.broken[covered]]
        if len(take) == 0:
            return
        index = torch.from_numpy(take).to(self.predictions.device)
        rows = np.searchsorted(covered, take)
        within = torch.from_numpy(rows).to(self.predictions.device)
        self.predictions[index] = outcome.predictions[within]
        self.linf[index] = outcome.linf[within]
        if outcome.adversarial is None:
            self.space[take] = ""
        else:
            self.images[index] = outcome.adversarial[within]
            self.space[take] = outcome.spaces()[rows]
        self.broken[take], self.broken_by[take], self.broken_at[take] = True, name, eps

    def outcome(self) -> Outcome:
        return Outcome(
            self.predictions.clone(),
            self.linf.clone(),
            broken_by=self.broken_by.copy(),
            broken_at=self.broken_at.copy(),
            adversarial=self.images.clone(),
            space=self.space.copy(),
        )


Attack = Callable[[AttackSpec, float, np.ndarray, dict[str, Row]], Outcome]


def run(
    plan: Plan,
    epsilons,
    cascade: bool,
    clean: torch.Tensor,
    labels: torch.Tensor,
    attack: Attack,
    images: torch.Tensor,
) -> list[Row]:
    """Every attack at every epsilon, and the worst cases, as ``Row``s: ``covered`` is the
    batch rows an outcome covers (all of them but for cascaded attacks; the outcome is None
    where a cascaded attack found no image left). ``attack(spec, eps, covered, done)`` runs one
    attack on those rows; ``done`` holds the rows that ran at this epsilon, by name.
    ``images``: the batch's plain images, each worst case's image until an attack breaks it."""
    every = np.arange(len(clean))
    unions = {worst_case: Union(clean, labels, images) for worst_case in WORST_CASE_NAMES}
    out = []
    for eps in sorted(epsilons):
        if eps == 0:  # no perturbation: every attack's outcome is the clean prediction
            zero = Outcome(clean, torch.zeros(len(clean), device=clean.device))
            out += [Row(name, eps, every, zero) for name in plan.names]
            out += [Row(w, eps, every, unions[w].outcome()) for w in WORST_CASE_NAMES]
            continue
        provisional = {w: union.broken.copy() for w, union in unions.items()}
        done: dict[str, Row] = {}
        for name in plan.order():
            if not cascade or plan.reads_every_image(name):
                covered = every
            else:
                covered = np.flatnonzero(~provisional[plan.narrowest[name]])
            outcome = attack(plan.by_name[name], eps, covered, done) if len(covered) else None
            done[name] = Row(name, eps, covered, outcome)  # outcome None: no image left
            if outcome is None:
                continue
            fooled = covered[(outcome.predictions != labels[covered]).cpu().numpy()]
            for worst_case in WORST_CASE_NAMES:
                if plan.covers(worst_case, name):
                    provisional[worst_case][fooled] = True
        for worst_case, union in unions.items():
            for name in plan.members[worst_case]:
                row = done[name]
                if row.outcome is not None:
                    union.add(name, eps, row.covered, row.outcome)
        out += list(done.values())
        out += [Row(w, eps, every, unions[w].outcome()) for w in WORST_CASE_NAMES]
    return out
