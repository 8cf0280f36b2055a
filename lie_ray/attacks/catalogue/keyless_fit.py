"""What the keyless attacker fits from the weights, once per scenario, for the bypass (``pba``)
and the key search (``key-search``) alike: the two share it (``Engine.view`` prepares once per
preparing function), and a pool of actors is handed it rather than fitting again.

With the network's weights, the transform's public structure, labelled images of its own and
queries to the deployed pipeline, the attacker

1. fits the bypass (Rusu et al., ICML 2022): a stand-in with the transform's own structure
   and its key relaxed to continuous parameters (``lie_ray.attacks.bypass``), through the
   frozen network, to the pipeline's output probabilities on its images, and a labels-only
   variant to its images' true labels;
2. searches the key space for the key under which the network is most accurate on its
   images (AprilPyone & Kiya's adaptive attack on their own defence;
   ``lie_ray.attacks.key_search``), from random keys and from the key read off the bypass,
   where one key serves every image (the fixed policy);
3. fits the bypass once more, started from the key the search found.

It judges every fit by what it can measure itself: top-1 agreement with the deployed pipeline
on the held-out part of its images (queries), and accuracy through the stand-in; the fit with
the best agreement is the one ``pba`` attacks through. What only the true key can score (the
gradient against the key holder's, the share of the key found) is scored afterwards by the
engine (``figures``), for the report, and never reaches a fit.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from lie_ray.attacks import bypass, key_search
from lie_ray.errors import LieRayError
from lie_ray.models.device import images_to_device, network_device, to_device
from lie_ray.transforms import from_arrays

# The bypass's variants, in the order they are fitted (the first best agreement wins a tie).
PROBABILITIES, LABELS, FROM_SEARCH = "probabilities", "labels", "from-search"
# What the run record calls each figure set (``fits``), so a report reads them by kind.
BYPASS, SEARCH = "bypass", "key search"


@dataclass(frozen=True)
class KeylessFit:
    """The attacker's artefacts: the stand-ins by variant and the chosen one, the key found
    (None where the key changes from image to image), and the attacker-side figures.
    ``fittings`` (each stand-in's fit in progress, which a 2x run carries on) stay where they
    were made: what travels to the actors is what the attacks use."""

    stand_ins: dict[str, torch.nn.Module]
    chosen: str
    found: key_search.KeyFound | None
    figures: dict[str, dict[str, float]]  # by variant: held-out agreement, accuracy
    images: int
    judged: int
    steps: int
    search_budget: int  # the key search's candidate keys (0 where none was searched)
    fittings: dict[str, bypass.Fitting] = field(default_factory=dict, compare=False)

    @property
    def stand_in(self) -> torch.nn.Module:
        return self.stand_ins[self.chosen]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "fittings": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def fit_keyless(view, settings) -> KeylessFit:
    """Once per scenario: the bypass in its variants, the key search, and their figures. A
    2x run (``view.prepared``: what the same preparation made with fewer steps) carries each
    of its fits on rather than fitting again, and keeps its key search."""
    torch.manual_seed(settings.attacker_seed)
    device = network_device(view.network)
    own = view.own
    images, labels = (images_to_device(own.fitting[0], device), to_device(own.fitting[1], device))
    judge = images_to_device(own.judging[0], device)
    judge_labels = to_device(own.judging[1], device)
    answers = view.oracle.logits_in_chunks(judge).argmax(1)
    earlier = view.prepared if isinstance(view.prepared, KeylessFit) else None

    def judged(stand_in) -> dict[str, float]:
        """Held-out agreement with the pipeline's answers, and accuracy: one pass for both."""
        ours = bypass.predictions(view.network, stand_in, judge)
        return {
            "agreement": (ours == answers).float().mean().item(),
            "accuracy": (ours == judge_labels).float().mean().item(),
        }

    @functools.cache
    def probabilities() -> torch.Tensor:
        """The pipeline's answers on the fitting images: asked once, and only by a fit that
        starts anew (a fit carried on keeps its targets)."""
        return F.softmax(view.oracle.logits_in_chunks(images), 1)

    def fitted(variant, targets, start=None, carry=True) -> bypass.Fitting:
        before = earlier.fittings.get(variant) if earlier is not None and carry else None
        if before is not None and before.steps <= settings.pba_steps:
            fitting = before.branch()  # the same fit, carried on
        else:
            stand_in = bypass.stand_in_for(view.transform).to(device)
            if start is not None:
                stand_in.set_key(start)
            fitting = bypass.Fitting(stand_in, targets(), seed=settings.attacker_seed)
        return fitting.advance(view.network, images, settings.pba_steps)

    fittings = {
        PROBABILITIES: fitted(PROBABILITIES, probabilities),
        LABELS: fitted(LABELS, lambda: labels),
    }
    found = None
    same_search = earlier is not None and earlier.search_budget == settings.key_search_budget
    if same_search:
        found = earlier.found  # the 2x run doubles the fit, not the search: the same search
    elif view.policy is not None and view.policy.name == "fixed":
        read = fittings[PROBABILITIES].stand_in.read_key()
        found = key_search.search_key(
            view.network,
            view.transform,
            images,
            labels,
            settings.key_search_budget,
            settings.attacker_seed,
            start=read,
        )
    if found is not None:
        try:
            fittings[FROM_SEARCH] = fitted(
                FROM_SEARCH, probabilities, start=found.transform, carry=same_search
            )
        except LieRayError:
            pass  # a plug-in's key the generic stand-in cannot be set to: the other two
    stand_ins = {variant: fitting.stand_in for variant, fitting in fittings.items()}
    figures = {variant: judged(stand_in) for variant, stand_in in stand_ins.items()}
    chosen = max(figures, key=lambda v: (figures[v]["agreement"], -list(figures).index(v)))
    return KeylessFit(
        stand_ins,
        chosen,
        found,
        figures,
        len(images),
        len(judge),
        settings.pba_steps,
        settings.key_search_budget if found is not None else 0,
        fittings,
    )


def key_holder(defender):
    """The key holder's fixed transform (the true key), for scoring only; None where the key
    changes from image to image. Rebuilt from its key arrays where the registry can: scoring
    then leaves the deployed pipeline's own transform untouched, and a keyless evaluation
    still asks nothing of it but queries (``tests/test_api.py`` watches its backward)."""
    if defender.policy.name != "fixed":
        return None
    deployed = defender.key.transform()
    try:
        return from_arrays(
            deployed.name, deployed.key_arrays(), deployed.block_size, deployed.variant
        )
    except LieRayError:
        return deployed  # a transform object the registry cannot rebuild


def bypass_figures(fit: KeylessFit, defender, own) -> dict:
    """The bypass's record: per variant, agreement and accuracy on the held-out images; the
    chosen variant; and, scored with the true key afterwards, the cosine between the chosen
    stand-in's input gradient and the key holder's, and the share of the key read off it."""
    record = {
        "kind": BYPASS,
        "chosen": fit.chosen,
        "agreement": fit.figures[fit.chosen]["agreement"],
        "accuracy": fit.figures[fit.chosen]["accuracy"],
        "variants": fit.figures,
        "images": fit.images,
        "judged": fit.judged,
        "steps": fit.steps,
    }
    true = key_holder(defender)
    if true is None:
        return record
    device = network_device(defender.model)
    images, labels = own.judging
    record["gradient_cosine"] = bypass.gradient_cosine(
        defender.model,
        fit.stand_in,
        true,
        images_to_device(images, device),
        to_device(labels, device),
    )
    read = fit.stand_in.read_key()
    if read is not None:
        record["key_share_read"] = key_search.key_share(read, true.key_arrays())
    return record


def search_figures(fit: KeylessFit, defender, own) -> dict:
    """The key search's record: the attacker's accuracy with the key it found, what it
    scored, where it started, and (scored with the true key afterwards) the share of the key
    it found."""
    found = fit.found
    if found is None:
        return {}
    record = {
        "kind": SEARCH,
        "accuracy": found.accuracy,
        "evaluations": found.evaluations,
        "started_from": found.started_from,
    }
    true = key_holder(defender)
    if true is not None:
        record["key_share"] = key_search.key_share(found.arrays, true.key_arrays())
    return record
