"""The per-batch evaluation of one defended scenario, free of Ray (an import-linter contract
says so): the CLI's actors (``lie_ray.evaluation.actor``) and ``lie_ray.evaluate`` both run it,
so their figures mean the same.

``Engine`` holds a scenario's defender and, for every attack that applies to it
(``AttackSpec.needs`` against what the defence offers, ``offered``), the view of that attack's
tier (``lie_ray.attacks.views``): a keyless attack gets the network, the transform's public
parameters, the attacker's images, a plain model and an oracle of the pipeline, never the key.
What an attack prepares from its view (PBA's stand-in, a recovered key) is built once, here,
where the attack runs: a recovered key is key material and never travels.

A batch's rows: its clean predictions, then, for a test batch, every attack at every epsilon on
the rows the mode gives it (``lie_ray.evaluation.cascade``), the worst cases, and the sanity
runs. Each output row is one (image, evaluation, epsilon).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch

from lie_ray.attacks import registry, seeding
from lie_ray.attacks.outcome import Batch, Outcome, effective_epsilon
from lie_ray.attacks.pipeline import Defender
from lie_ray.attacks.spec import TIERS, WORST_CASE_NAMES, WORST_CASES, AttackSpec
from lie_ray.attacks.views import VIEWS, Oracle, OwnImages
from lie_ray.evaluation import cascade
from lie_ray.evaluation.cascade import CLEAN, Row
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.models.device import images_to_device, network_device
from lie_ray.transforms import transform_class


def key_recoverable(policy: str | None, transform: str | None, variant: str | None = None) -> bool:
    """Whether leaked pairs reveal the key the attacked images use: one key for every image
    (``fixed``) of a transform with a known-plaintext recovery, which models each transform's
    default variant (FFX's ``reference`` variant divides differently)."""
    if policy != "fixed" or transform is None:
        return False
    cls = transform_class(transform)
    return cls.known_plaintext and cls.check_variant(variant) == cls.variants[0]


def offered(
    encrypted: bool,
    plain_model: bool,
    attacker_images: bool,
    policy: str | None = None,
    transform: str | None = None,
    variant: str | None = None,
) -> frozenset[str]:
    """What a defence offers its attackers, in ``NEEDS`` names: the driver counts rows from
    a run record with this, the actors attack with it, so both agree."""
    needs = set()
    if encrypted:
        needs.add("transform")
        if key_recoverable(policy, transform, variant):
            needs.add("recoverable-key")
        needs.add("fixed-key" if policy == "fixed" else "randomised-key")
    if plain_model:
        needs.add("plain-model")
    if attacker_images:
        needs.add("attacker-images")
    return frozenset(needs)


def chosen_specs(settings: EvalSettings, available: frozenset[str]) -> list[AttackSpec]:
    """The attacks run on a defence offering ``available``: those ``settings.attacks`` names
    (None: every built-in attack), in the registry's order, where they apply."""
    return [spec for spec in registry.chosen(settings.attacks) if spec.applies(available)]


def sanity_runs(
    settings: EvalSettings, attacks: list[AttackSpec] = ()
) -> list[tuple[AttackSpec, float, EvalSettings]]:
    """(spec, epsilon, settings) of each sanity run: lie_ray's own, and the 2x run of each of
    ``attacks`` (those run on a scenario) that declares one; none when switched off, or where
    no epsilon was attacked."""
    if not settings.sanity:
        return []
    runs = []
    for spec in registry.sanity_runs(attacks):
        eps = spec.sanity_epsilon(settings)
        if eps is not None:
            runs.append((spec, eps, spec.sanity_settings(settings)))
    return runs


def rows_per_test_image(specs: list[AttackSpec], settings: EvalSettings) -> int:
    """Output rows per test image: its clean row, then at every epsilon each attack and the
    worst cases, then the sanity runs (a train image gives one row). The driver counts rows
    with this to know when a scenario is complete."""
    per_epsilon = len(specs) + len(WORST_CASES)
    return 1 + len(settings.epsilons) * per_epsilon + len(sanity_runs(settings, specs))


def settings_for(spec: AttackSpec, settings: EvalSettings, salt: str | None = None) -> EvalSettings:
    """The settings an attack runs with: one run, not ``pgd_restarts``, for a single run; and
    a seed of its own (``seeding.salted`` with its name, or ``salt``: a preparation that
    attacks share), so that no two attacks share a random draw."""
    return dataclasses.replace(
        settings,
        pgd_restarts=settings.pgd_restarts if spec.restarts else 1,
        attacker_seed=seeding.salted(settings.attacker_seed, salt or spec.name),
    )


class Engine:
    """One defended scenario's attacks, ready for batch after batch.

    ``attacker``: the attacker's own labelled images (``OwnImages``; bare images are labelled
    by querying the pipeline, and a quarter of them held out to judge fits on). ``prepared``:
    what the keyless attacks prepared elsewhere (``shared_preparations`` of an engine on
    another process: the bypass, a key found by search), taken instead of preparing again, so
    that a pool of actors fits once per scenario. The defender's key never travels; what the
    attacker made from its own images and queries may."""

    def __init__(
        self,
        defender: Defender,
        settings: EvalSettings,
        attacker: OwnImages | np.ndarray | None = None,
        plain_model: torch.nn.Module | Callable[[], torch.nn.Module] | None = None,
        prepared: Mapping[str, Any] | None = None,
    ):
        self.defender, self.settings = defender, settings
        spec = defender.key.spec if defender.encrypted else None
        self.available = offered(
            defender.encrypted,
            plain_model is not None,
            attacker is not None,
            defender.policy.name if defender.encrypted else None,
            spec.name if spec else None,
            spec.variant if spec else None,
        )
        self.specs = chosen_specs(settings, self.available)
        self.sanity = sanity_runs(settings, self.specs)
        every = [*self.specs, *(spec for spec, _, _ in self.sanity)]
        self.by_name = {s.name: s for s in every}
        if plain_model is not None and not any("plain-model" in s.needs for s in self.specs):
            plain_model = None  # nothing here attacks through it: not loaded
        if callable(plain_model) and not isinstance(plain_model, torch.nn.Module):
            plain_model = plain_model()
        self.oracle = Oracle(defender)  # the engine holds the defender it answers for
        self.own = self.labelled(attacker)
        self.knowledge = dict(
            network=defender.model,
            transform=spec,
            policy=defender.policy if defender.encrypted else None,
            oracle=self.oracle,
            attacker_images=None if self.own is None else self.own.fitting[0],
            own=self.own,
            plain_model=plain_model,
        )
        self.given = dict(prepared or {})
        self.preparations: dict[tuple, Any] = {}  # one per preparing function and effort
        self.views = {s.name: self.view(s) for s in every}
        # What makes two runs one attack (AttackSpec.same_run), from what each prepared.
        self.run_keys = {
            s.name: s.same_run(self.views[s.name].prepared) for s in every if s.same_run
        }

    def labelled(self, attacker: OwnImages | np.ndarray | None) -> OwnImages | None:
        """Bare images get the labels the deployed pipeline gives them (the attacker's
        queries) and a quarter held out for judging its fits."""
        if attacker is None or isinstance(attacker, OwnImages):
            return attacker
        answers = self.oracle.logits_in_chunks(images_to_device(attacker, self.device))
        return OwnImages.split(attacker, answers.argmax(1).cpu().numpy())

    @property
    def device(self) -> torch.device:
        return network_device(self.defender.model)

    def view(self, spec: AttackSpec):
        """What ``spec``'s attacker has, with what its ``prepare`` built from it: given
        (prepared elsewhere), or built here once per preparing function and effort (attacks
        that share a preparation, the bypass and the key search, share one)."""
        given = dict(self.knowledge)
        if spec.tier == "leaked":
            plain = self.knowledge["attacker_images"][: spec.leaked_pairs]
            leaked, _ = self.defender.policy.encrypt(
                self.defender.key, plain, np.arange(len(plain)), "test"
            )
            given["pairs"] = (plain, leaked)
        if spec.tier in ("with-key", "channel"):
            given["pipeline"] = self.defender
        view = VIEWS[spec.tier](**given)
        if spec.prepare is None:
            return view
        if spec.name in self.given:
            return dataclasses.replace(view, prepared=self.given[spec.name])
        # a 2x sanity run prepares with twice the effort too
        settings = spec.sanity_settings(self.settings) if spec.is_sanity else self.settings
        effort = settings_for(spec, settings, salt=spec.prepare.__qualname__)
        # a view is decided by its tier and, in the leaked tier, its k pairs
        memo = (spec.prepare, spec.tier, spec.leaked_pairs, effort)
        if memo not in self.preparations:
            # what the same preparation made at another effort, if any, is in view.prepared
            # when it runs: a 2x run reuses what its doubling leaves alone (the key search)
            earlier = next((p for m, p in self.preparations.items() if m[:3] == memo[:3]), None)
            view = dataclasses.replace(view, prepared=earlier)
            self.preparations[memo] = spec.prepare(view, effort)
        return dataclasses.replace(view, prepared=self.preparations[memo])

    def shared_preparations(self) -> dict[str, Any]:
        """What the keyless attacks prepared (the attacker's own artefacts, made from its
        images and queries), by attack: for the other actors of a pool. The leaked tier's
        recovered keys are rebuilt where they run, from pairs, in milliseconds."""
        return {
            name: view.prepared
            for name, view in self.views.items()
            if self.by_name[name].tier == "keyless" and view.prepared is not None
        }

    def fit_figures(self) -> dict[str, dict]:
        """What each attack's preparation reached (``AttackSpec.fit_figures``): the attacker's
        own figures, and those only the true key can score (the gradient against the key
        holder's, the share of the key found), scored here, afterwards, for the report."""
        return {
            name: self.by_name[name].fit_figures(view.prepared, self.defender, self.own)
            for name, view in self.views.items()
            if self.by_name[name].fit_figures is not None and view.prepared is not None
        }

    # --- a batch ----------------------------------------------------------------------------

    def evaluate_batch(
        self, batch: Batch, split: str = "test", scenario: str = ""
    ) -> dict[str, np.ndarray]:
        """One batch's rows: its clean predictions, then for a test batch every attack at
        every epsilon, the worst cases and the sanity runs (a train batch is scored clean)."""
        torch.manual_seed(self.settings.attacker_seed)
        clean = self.defender.predict(batch.images, batch.ids)
        every = np.arange(len(batch.ids))
        zero = torch.zeros(len(clean), device=clean.device)
        rows = [Row(split, 0.0, every, Outcome(clean, zero))]
        if split == "test":
            rows += self.attack_rows(batch, clean)
        return to_columns(scenario, rows, batch, clean)

    def attack_rows(self, batch: Batch, clean: torch.Tensor) -> list[Row]:
        """Every attack at every epsilon, each on the rows the mode gives it, then the worst
        cases (``lie_ray.evaluation.cascade``), then the sanity runs."""
        plan = cascade.Plan(self.specs, self.defender.encrypted)

        def attack(spec: AttackSpec, eps: float, covered: np.ndarray, done: dict) -> Outcome:
            part = batch if len(covered) == len(batch.ids) else batch.subset(covered)
            return self.run(spec, part, eps, covered, done, self.settings)

        rows = cascade.run(
            plan,
            self.settings.epsilons,
            self.settings.mode == "cascade",
            clean,
            batch.labels,
            attack,
            batch.images,
        )
        for spec, eps, run_settings in self.sanity:
            covered = self.met(spec, eps, rows, len(batch.ids))
            part = batch if len(covered) == len(batch.ids) else batch.subset(covered)
            outcome = self.run(spec, part, eps, covered, {}, run_settings) if len(covered) else None
            rows.append(Row(spec.name, eps, covered, outcome))
        return rows

    @staticmethod
    def met(spec: AttackSpec, eps: float, rows: list[Row], n: int) -> np.ndarray:
        """The rows a sanity run attacks: every one, or for a 2x run the ones the attack it
        repeats met at that epsilon (in cascade mode, those its attacker had left)."""
        if spec.reference is None:
            return np.arange(n)
        return next(
            row.covered
            for row in rows
            if row.evaluation == spec.reference and abs(row.epsilon - eps) <= 1e-6
        )

    def run(
        self,
        spec: AttackSpec,
        part: Batch,
        eps: float,
        covered: np.ndarray,
        done: dict[str, Row],
        settings: EvalSettings,
    ) -> Outcome:
        """``spec`` on ``part`` (the batch's ``covered`` rows), handed what ran before it at
        this epsilon on every one of these rows, within its tier; or the outcome of an earlier
        run that was the same attack (``AttackSpec.same_run``), handed on."""
        view = self.views[spec.name]
        held = {
            name: row
            for name, row in done.items()
            if row.outcome is not None and np.isin(covered, row.covered).all()
        }
        key = self.run_keys.get(spec.name)
        if key is not None:
            first = next((n for n in done if self.run_keys.get(n) == key), None)
            if first is not None and first in held:
                return dataclasses.replace(Covering(held, covered)[first], reused=True)
        within = TIERS.index(spec.tier)
        earlier = {
            name: row
            for name, row in held.items()
            if TIERS.index(self.by_name[name].tier) <= within
        }
        view = dataclasses.replace(view, earlier=Covering(earlier, covered))
        return spec.run(view, part, effective_epsilon(eps), settings_for(spec, settings))


class Covering(Mapping[str, Outcome]):
    """The earlier runs' outcomes on every one of the ``covered`` rows, by name, each cut to
    those rows only when first asked for: a cut copies the run's adversarial images, and
    nearly every attack asks for none (BPDA reads its identity run's), so cutting them all
    for every attack cost a copy per earlier run per attack."""

    def __init__(self, rows: dict[str, Row], covered: np.ndarray):
        self.rows, self.covered = rows, covered
        self.cut: dict[str, Outcome] = {}

    def __getitem__(self, name: str) -> Outcome:
        if name not in self.cut:
            row = self.rows[name]
            self.cut[name] = row.outcome.subset(np.searchsorted(row.covered, self.covered))
        return self.cut[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)


def to_columns(
    scenario: str, rows: list[Row], batch: Batch, clean: torch.Tensor
) -> dict[str, np.ndarray]:
    """One output row per image per (evaluation, epsilon), attacked or not: the driver counts
    rows to know when a scenario is done. An image a cascaded attack skipped (its attacker
    had broken it already) keeps its clean prediction, with ``attacked`` False; the results
    count attacked rows only."""
    n = len(batch.ids)
    labels, clean_np = batch.labels.cpu().numpy(), clean.cpu().numpy()
    columns = {
        name: []
        for name in (
            "adv_pred",
            "linf",
            "attacked",
            "reused",
            "broken_by",
            "broken_at",
            "image",
            "space",
        )
    }
    for row in rows:
        predictions, linf = clean_np.copy(), np.zeros(n)
        attacked = np.zeros(n, dtype=bool)
        outcome = row.outcome
        if outcome is not None:
            predictions[row.covered] = outcome.predictions.cpu().numpy()
            linf[row.covered] = outcome.linf.cpu().numpy()
            attacked[row.covered] = True
        broken_by, broken_at = np.full(n, "", object), np.full(n, np.nan)
        if outcome is not None and outcome.broken_by is not None:
            broken_by[row.covered] = outcome.broken_by
            if outcome.broken_at is not None:
                broken_at[row.covered] = outcome.broken_at
        columns["adv_pred"].append(predictions)
        columns["linf"].append(linf)
        columns["attacked"].append(attacked)
        columns["reused"].append(attacked & (outcome is not None and outcome.reused))
        columns["broken_by"].append(broken_by)
        columns["broken_at"].append(broken_at)
        image, space = decided_images(row, n)
        columns["image"].append(image)
        columns["space"].append(space)
    predictions = np.concatenate(columns["adv_pred"])
    return {
        "scenario": np.full(n * len(rows), scenario),
        "evaluation": np.repeat([row.evaluation for row in rows], n),
        "epsilon": np.repeat([row.epsilon for row in rows], n).astype(np.float64),
        "id": np.tile(batch.ids, len(rows)),
        "label": np.tile(labels, len(rows)),
        "clean_pred": np.tile(clean_np, len(rows)),
        "adv_pred": predictions,
        "correct": predictions == np.tile(labels, len(rows)),
        "linf": np.concatenate(columns["linf"]).astype(np.float64),
        "attacked": np.concatenate(columns["attacked"]),
        "reused": np.concatenate(columns["reused"]),  # attacked, by an earlier run's outcome
        "broken_by": np.concatenate(columns["broken_by"]).astype(str),
        "broken_at": np.concatenate(columns["broken_at"]).astype(np.float64),
        # a worst case's image made by an attack (``decided_images``), else empty
        "image": np.concatenate(columns["image"]),
        "space": np.concatenate(columns["space"]).astype(str),
    }


def decided_images(row: Row, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A worst-case row's images that an attack made (8-bit HWC bytes) and their space, for
    ``lie-ray verify``; empty for every other row, and where the plain image decided (nothing
    broke it, or it was misclassified already: the data holds it) or the attack kept none."""
    image, space = np.full(n, b"", dtype=object), np.full(n, "", dtype=object)
    outcome = row.outcome
    if row.evaluation not in WORST_CASE_NAMES or outcome is None or outcome.adversarial is None:
        return image, space  # an attack's own row, or a composite's (its broken_by: parts)
    made = np.isin(outcome.broken_by, ("", CLEAN), invert=True) & (outcome.spaces() != "")
    if made.any():
        index = torch.from_numpy(np.flatnonzero(made)).to(outcome.adversarial.device)
        levels = torch.round(outcome.adversarial[index] * 255).to(torch.uint8)
        pixels = levels.permute(0, 2, 3, 1).cpu().numpy()
        rows = row.covered[made]
        image[rows] = [p.tobytes() for p in pixels]
        space[rows] = outcome.spaces()[made]
    return image, space
