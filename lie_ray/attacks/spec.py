"""What an evaluation IS, declared once: ``AttackSpec``, the attacker tiers and the worst cases.

Every fact the rest of lie_ray asks about an evaluation is a field of its spec: who can run it
(its attacker's ``tier``), what it needs from the defence and the caller (``needs``), whether
it takes ``pgd_restarts`` or runs once, where the cascade puts it, what it costs for
``--estimate``, whether it is one of the paper's readings or a sanity run, and how reports show
it. The engine (``lie_ray.evaluation.engine``), the cascade, the estimate and the report read
these fields; none of them keeps a table keyed by an attack's name. ``lie_ray.attacks.register``
checks a spec's facts when it is registered, as ``lie_ray.transforms.register`` does a
transform's.

The tiers nest, each attacker holding what the ones before it hold:

``keyless``   the network's weights, the transform's class and public parameters (name, block
              size, variant, key policy), plain images of its own, a plain model where one
              exists, and queries to the deployed pipeline (outputs only, no gradient).
``leaked``    that, plus k plain/encrypted pairs of its own images under the defender's key.
``with-key``  that, plus the keyed pipeline itself (the key, and the transform's backward).
``channel``   that, editing the ENCRYPTED image in transit (eps measured in ciphertext space).

Each tier has its worst case (``WORST_CASES``): per image, the union over the attacks of that
tier and the tiers before it. ``worst-case-keyless`` is the headline of a key-based defence: an
attacker with the weights but no key and no leaked pair. It no longer takes the leaked-pair
attacks, which now have ``worst-case-leaked`` of their own.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lie_ray.errors import LieRayError

if TYPE_CHECKING:
    from lie_ray.attacks.outcome import Batch, Outcome
    from lie_ray.evaluation.settings import EvalSettings

TIERS = ("keyless", "leaked", "with-key", "channel")
# What an attack may need beyond the network; the engine knows which a defence offers.
NEEDS = {
    "transform": "a keyed transform in front of the network (an encrypted scenario)",
    "plain-model": "a model trained on plain images (the transfer attack's source)",
    "attacker-images": "plain images of the attacker's own, never the attacked ones",
    "recoverable-key": "one key for every image (the fixed policy) of a transform whose key "
    "known-plaintext pairs reveal",
    "fixed-key": "one key for every image (the fixed policy)",
    "randomised-key": "a key that changes from image to image or batch to batch",
}
ROLES = ("attack", "paper-reading", "sanity")
# Carlini et al.'s gradient-masking check compares them: "white" follows the pipeline's own
# gradient (the key holder's), "black" none of it (queries, or another model's); None: the
# gradient of something the attacker made (EOT's keys, PBA's stand-in, a recovered key).
BOXES = ("white", "black", None)
PASS_KINDS = ("attack", "attack_single", "forward", "forward_single")


@dataclass(frozen=True)
class WorstCase:
    """One attacker's worst case: per image, the union over the attacks of ``tiers``."""

    name: str
    tiers: tuple[str, ...]
    label: str  # how the console and the report's prose call it


WORST_CASES = (
    WorstCase("worst-case-keyless", ("keyless",), "keyless"),
    WorstCase("worst-case-leaked", ("keyless", "leaked"), "with leaked pairs"),
    WorstCase("worst-case", ("keyless", "leaked", "with-key"), "with the key"),
    WorstCase("worst-case-channel", TIERS, "on the channel"),
)
WORST_CASE_KEYLESS, WORST_CASE_LEAKED, WORST_CASE, WORST_CASE_CHANNEL = (
    w.name for w in WORST_CASES
)
WORST_CASE_NAMES = tuple(w.name for w in WORST_CASES)
THREATS = {w.tiers[-1]: w for w in WORST_CASES}  # the attacker of each tier -> its worst case
PLAIN_IMAGE_TIERS = THREATS["with-key"].tiers  # the attackers who perturb the plain image


def united_tiers(worst_case: WorstCase, encrypted: bool) -> tuple[str, ...]:
    """The tiers ``worst_case`` unites on a defence with (or without) a key. Without a key
    there is nothing to withhold or leak, so every plain-image attacker runs every
    plain-image attack."""
    if not encrypted and worst_case.tiers[-1] in ("keyless", "leaked"):
        return PLAIN_IMAGE_TIERS
    return worst_case.tiers


# An attack's run: (its view, the batch of PLAIN images, eps, the settings) -> Outcome.
Run = Callable[[Any, "Batch", float, "EvalSettings"], "Outcome"]
# Its cost at most, one image at one epsilon: (settings, alone) -> image-passes by kind
# (``PASS_KINDS``); ``alone``: every image has a key of its own (library attacks one by one).
Cost = Callable[["EvalSettings", bool], Mapping[str, float]]


@dataclass(frozen=True)
class AttackSpec:
    """One evaluation, every fact about it. Required facts default to None so that
    ``lie_ray.attacks.register`` can name what is missing (``REQUIRED_FACTS``)."""

    name: str | None = None
    tier: str | None = None  # TIERS
    run: Run | None = None
    cost: Cost | None = None
    # Order among the attacks the cascade runs cheapest first (the paper's readings, which run
    # on every image, are ordered among themselves by it); ties break by registration.
    cascade_rank: float | None = None
    label: str | None = None  # the report's column and the curves' legend
    needs: frozenset[str] = frozenset()  # NEEDS
    role: str = "attack"  # ROLES
    restarts: bool = True  # pgd_restarts random restarts (False: one run, as the paper)
    leaked_pairs: int = 0  # the leaked tier's k pairs
    # Built once per scenario from the attack's view, before any batch (a stand-in fitted on
    # the attacker's images, a key recovered from pairs): the view's ``prepared``. Called as
    # prepare(view, settings) once per (prepare, tier, k pairs, settings); where the same
    # preparation already ran at another effort (a 2x run's doubled settings), the view it
    # gets holds that earlier result in ``prepared``, to reuse what the doubling leaves alone
    # (the key search) or carry on (``carries_on``); otherwise ``prepared`` is None.
    prepare: Callable[[Any, EvalSettings], Any] | None = None
    prepare_cost: Callable[[EvalSettings], Mapping[str, float]] | None = None  # passes, once
    # What the preparation reached, for the run record: (prepared, the defender, the
    # attacker's OwnImages) -> figures. The attacker's own (agreement on its held-out images)
    # and those only the true key can score (the gradient against the key holder's, the
    # share of the key found), scored after the fact, never fed to the attack.
    fit_figures: Callable[[Any, Any, Any], dict] | None = None
    # Two runs whose keys are equal (and not None) are one attack: the later is handed the
    # earlier's outcome (``Outcome.reused``) instead of running again. (prepared) -> key.
    same_run: Callable[[Any], Any] | None = None
    colour: str = "tab:gray"  # the curves' line colour
    box: str | None = None  # BOXES: "white" (gradients of the pipeline) or "black" (none)
    description: str = ""  # one line for the report
    # What it ran with, for the run record: a fragment of settings, and the same in words
    # (the report prints the words, so it needs no knowledge of any attack's settings).
    budget: Callable[[EvalSettings], dict] | None = None
    budget_text: Callable[[EvalSettings], str] | None = None
    # Sanity runs only: the epsilon they run at ((settings) -> eps or None: not run) and the
    # settings they run with; they run on every image, after the cascade, in no worst case.
    sanity_epsilon: Callable[[EvalSettings], float | None] | None = None
    sanity_settings: Callable[[EvalSettings], EvalSettings] | None = None
    checks: str | None = None  # sanity runs: which check reads it ("unbounded", "once", ...)
    # Twice this attack's effort ((settings) -> settings: EOT's keys, the bypass's fit steps,
    # Square's queries): the 2x check runs it so at the headline epsilon on the images the
    # attack met there, and compares (``lie_ray.attacks.catalogue.sanity.doubled_run``).
    doubled: Callable[[EvalSettings], EvalSettings] | None = None
    # Its preparation at a higher effort carries on from the one at a lower effort rather than
    # starting anew (the bypass's fits go on from their 1x steps): its 2x run pays, and is
    # priced, for the difference alone.
    carries_on: bool = False
    reference: str | None = None  # a 2x sanity run: the evaluation it repeats with twice the effort

    REQUIRED_FACTS = ("name", "tier", "run", "cost", "cascade_rank", "label")

    def applies(self, available: frozenset[str]) -> bool:
        """Whether a defence offering ``available`` (``NEEDS`` names) can be attacked so."""
        return self.needs <= available

    def runs_under(self, settings: EvalSettings) -> int:
        """Random restarts: ``pgd_restarts``, or one for the paper's single runs."""
        return settings.pgd_restarts if self.restarts else 1

    @property
    def is_sanity(self) -> bool:
        return self.role == "sanity"

    @property
    def encrypted_only(self) -> bool:
        return "transform" in self.needs

    def __str__(self) -> str:
        """Every fact, one a line (functions by name): ``print(lie_ray.attacks.spec(name))``."""
        lines = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if callable(value):
                value = getattr(value, "__qualname__", repr(value))
            elif isinstance(value, frozenset):
                value = ", ".join(sorted(value)) or "-"
            lines.append(f"{field.name:<16} {value}")
        return "\n".join(lines)

    def shown(self) -> dict:
        """The facts a report needs, written into the run record so that it renders without
        the spec's package installed."""
        return {
            "tier": self.tier,
            "role": self.role,
            "label": self.label,
            "colour": self.colour,
            "box": self.box,
            "cascade_rank": self.cascade_rank,
            "encrypted_only": self.encrypted_only,
            "checks": self.checks,
            "reference": self.reference,
            "description": self.description,
        }


def check_facts(spec: AttackSpec) -> AttackSpec:
    """``spec``, or a one-line error naming the facts it lacks or gets wrong."""
    if not isinstance(spec, AttackSpec):
        raise LieRayError(
            f"{spec!r} is not a lie_ray.attacks.AttackSpec: declare your attack as one"
        )
    missing = [fact for fact in AttackSpec.REQUIRED_FACTS if getattr(spec, fact) is None]
    if missing:
        raise LieRayError(
            f"attack spec {spec.name or '(unnamed)'} lacks {', '.join(missing)}: set them "
            "(lie_ray.attacks.AttackSpec says what each one is for)"
        )
    problems = []
    if spec.tier not in TIERS:
        problems.append(f"tier {spec.tier!r} is not one of {', '.join(TIERS)}")
    if spec.role not in ROLES:
        problems.append(f"role {spec.role!r} is not one of {', '.join(ROLES)}")
    if spec.box not in BOXES:
        problems.append(f"box {spec.box!r} is not 'white', 'black' or None")
    unknown = sorted(spec.needs - set(NEEDS))
    if unknown:
        problems.append(f"needs {unknown}, not among {', '.join(NEEDS)}")
    if not (callable(spec.run) and callable(spec.cost)):
        problems.append("run and cost must be callables")
    if not isinstance(spec.cascade_rank, int | float) or not math.isfinite(spec.cascade_rank):
        problems.append(f"cascade_rank must be a finite number, got {spec.cascade_rank!r}")
    if (spec.tier == "leaked") != (spec.leaked_pairs > 0):
        problems.append("a leaked-tier attack, and only one, names its leaked_pairs (k >= 1)")
    if spec.tier == "leaked" and not {"transform", "attacker-images"} <= spec.needs:
        problems.append(
            "a leaked-tier attack needs the transform and the attacker's images (its pairs)"
        )
    if spec.is_sanity != (spec.sanity_epsilon is not None):
        problems.append("a sanity run, and only one, says its sanity_epsilon")
    if spec.reference is not None and not spec.is_sanity:
        problems.append("only a sanity run repeats a reference evaluation")
    if spec.doubled is not None and not callable(spec.doubled):
        problems.append("doubled must be a callable (settings) -> settings")
    if spec.name in WORST_CASE_NAMES or spec.name in ("test", "train"):
        problems.append(f"its name {spec.name!r} is a row name lie_ray reserves")
    if problems:
        raise LieRayError(f"attack spec {spec.name}: " + "; ".join(problems))
    return spec
