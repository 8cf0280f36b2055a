"""``lie_ray.evaluate``: the evaluation ``lie-ray evaluate`` runs, on a model and a defence of
the user's own, with tensors in and tables out.

The model classifies what the transform outputs (or plain images, with no transform): it is the
defender's network, and lie_ray puts the transform in front of it exactly as for its own
scenarios (one key for every image: the fixed policy). Every attack, the cascade and the worst
cases are the CLI's own code (``lie_ray.evaluation.engine``), so a figure here and in
``results.parquet`` mean the same thing. ``threat`` names the attacker whose worst case the
tables end with; an attack gets only what its tier's attacker has (``lie_ray.attacks.views``).

In-process by default (a laptop, a notebook); ``ray=True`` (or a cluster address) spreads the
batches over an actor pool. The key then travels as a file path, read inside each actor, as the
CLI's key does: a transform object holding its key, or a ``Key``, stays in-process.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from lie_ray.api.defence import ObjectKeyedTransform, frozen, make_defender
from lie_ray.attacks import registry
from lie_ray.attacks.outcome import Batch
from lie_ray.attacks.spec import THREATS as WORST_CASE_OF
from lie_ray.attacks.spec import WORST_CASE_NAMES, AttackSpec, united_tiers
from lie_ray.attacks.views import OwnImages
from lie_ray.data.arrays import as_uint8_images
from lie_ray.errors import LieRayError
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.saved import without_images
from lie_ray.evaluation.settings import EvalSettings, get_eval_preset
from lie_ray.evaluation.tables import attack_record, summarise
from lie_ray.infra import provenance
from lie_ray.keys import Key, load_key
from lie_ray.models.device import images_to_device, to_device
from lie_ray.transforms import Transform, TransformSpec

# threat -> the worst case that attacker ends with (the attackers nest: keyless in leaked in
# with-key in channel, so each threat's tables hold the narrower worst cases too).
THREATS = {tier: worst_case.name for tier, worst_case in WORST_CASE_OF.items()}


@dataclass(frozen=True)
class Evaluation:
    """What ``evaluate`` gives back: ``results`` has the columns of ``results.parquet`` (one row
    per evaluation and epsilon, its n, error and 95% interval), ``examples`` those of
    ``examples.parquet`` (one row per image, evaluation and epsilon); both carry ``record``
    (settings, transform, key fingerprint, data digest, code version) in their metadata."""

    results: pa.Table
    examples: pa.Table
    record: dict

    def error(self, evaluation: str, epsilon: float) -> float:
        """One figure: the error of ``evaluation`` at ``epsilon``."""
        for row in self.results.to_pylist():
            if row["evaluation"] == evaluation and abs(row["epsilon"] - epsilon) < 1e-12:
                return row["error"]
        raise LieRayError(
            f"no {evaluation!r} row at eps {epsilon:g}: it ran "
            f"{sorted(set(self.results['evaluation'].to_pylist()))}"
        )

    def __repr__(self) -> str:
        lines = [f"{'evaluation':<20} {'eps':>7} {'n':>5} {'error':>6}"]
        lines += [
            f"{r['evaluation']:<20} {r['epsilon']:>7.4f} {r['n']:>5} {r['error']:>6.3f}"
            for r in self.results.to_pylist()
        ]
        return "\n".join(lines)


def evaluate(
    model: torch.nn.Module,
    images,
    labels,
    *,
    transform: str | Transform | None = None,
    key: str | os.PathLike | Key | None = None,
    eps: Sequence[float] = (8 / 255,),
    attacks: str | Sequence[str] = "adaptive",
    threat: str = "with-key",
    cascade: bool = True,
    preset: str = "smoke",
    plain_model: torch.nn.Module | None = None,
    attacker_images=None,
    attacker_labels=None,
    ids=None,
    name: str = "model",
    ray: bool | str = False,
    **settings: Any,
) -> Evaluation:
    """Attack ``model`` behind ``transform`` on ``images`` (uint8 NHWC arrays, or NCHW tensors:
    uint8, or floats on the 8-bit grid k / 255) with true ``labels``.

    transform       None (the model sees plain images), a transform's name (with ``key``: a
                    key file, or a ``lie_ray.keys.Key``) or a ``Transform`` object.
    eps             L-inf radii on the plain image (the clean row, eps 0, always comes too).
    attacks         "adaptive" (every lie_ray attack ``threat``'s attacker can run), "paper"
                    (the paper's three readings) or a list of names (``lie_ray.attacks.names()``,
                    attacks from outside lie_ray included).
    threat          "keyless" (weights, no key, no pairs), "leaked" (plus leaked pairs),
                    "with-key" or "channel": whose worst case to end with.
    cascade         each costlier attack only on the images cheaper ones left unbroken
                    (per-image worst cases equal full mode's; False: every attack, every image).
    plain_model     a model trained on plain images: enables the transfer attack.
    attacker_images the attacker's own plain images (uint8 NHWC), never the ones attacked
                    nor trained on: the bypass fits on them, the key search searches with
                    them, recovered-key leaks pairs of them; a quarter is held out to judge
                    the fits on.
    attacker_labels their true labels (None: the attacker labels them by querying the
                    pipeline).
    preset          the attacks' budgets (``lie_ray.evaluation.settings.EVAL_PRESETS``);
                    ``settings`` override single fields (pgd_steps=20, batch_size=64, ...).
    ray             run the batches on a Ray actor pool (True: join RAY_ADDRESS or start one;
                    a string: that cluster's address); ``key`` must then be a file path.
    """
    if threat not in THREATS:
        raise LieRayError(f"unknown threat {threat!r}: choose one of {', '.join(THREATS)}")
    plain, label_array, id_array = as_uint8_images(images), as_labels(labels), as_ids(ids, labels)
    if len(plain) != len(label_array):
        raise LieRayError(
            f"{len(plain)} images but {len(label_array)} labels: pass one label per image"
        )
    base = get_eval_preset(preset)
    base = dataclasses.replace(base, test_limit=None)  # the images given are all attacked
    overrides = {
        "epsilons": tuple(sorted({0.0, *map(float, eps)})),
        "mode": "cascade" if cascade else "full",
        **({"sanity": False} if threat in ("keyless", "leaked") else {}),
        **settings,
    }
    unknown = set(overrides) - {f.name for f in dataclasses.fields(EvalSettings)}
    if unknown:
        raise LieRayError(
            f"unknown evaluation setting(s) {sorted(unknown)}: see "
            "lie_ray.evaluation.settings.EvalSettings for the fields"
        )
    chosen = base.replace(**overrides)
    keyed = keyed_transform(transform, key, ray)
    own = own_images(attacker_images, attacker_labels)
    only, not_run = choose_attacks(
        attacks, threat, keyed is not None, plain_model is not None, own is not None
    )
    if ray:
        registry.check_reachable_from_actors(only)
    chosen = chosen.replace(
        attacks=only, **({"attacker_images": fitted(own)} if own is not None else {})
    )
    record = {
        "kind": "api-evaluation",
        "scenario": name,
        "threat": threat,
        "settings": dataclasses.asdict(chosen),
        "attacks": attack_record(chosen),
        "evaluations": sorted(only),  # those that applied ran (lie_ray.attacks.spec.NEEDS)
        "not_run": not_run,
        "transform": None if keyed is None else dataclasses.asdict(keyed.spec),
        # the master key's (as in results.parquet), or a transform object's own; and
        # the fixed key's transform, the same either way
        "key_fingerprint": "" if keyed is None else keyed.fingerprint,
        "transform_fingerprint": "" if keyed is None else keyed.transform().fingerprint,
        "data": {"images": len(plain), "sha256": data_digest(plain, label_array, id_array)},
        "code": provenance.code(),
    }
    request = Request(model, keyed, plain, label_array, id_array, chosen, plain_model, own, name)
    with frozen(request.model), frozen(request.plain_model):
        engine = prepared_engine(request)
        record["fits"] = engine.fit_figures()
        if ray:
            from lie_ray.api.distributed import evaluate_on_ray

            examples = evaluate_on_ray(request, key, ray, engine.shared_preparations())
        else:
            examples = evaluate_here(request, engine)
    examples = without_images(examples)  # kept for ``lie-ray verify``'s files, not here
    sanity = registry.sanity_runs(registry.chosen(chosen.attacks))
    shown = {*only, *shown_worst_cases(threat), "test", *(s.name for s in sanity)}
    examples = examples.filter(pa.array([e in shown for e in examples["evaluation"].to_pylist()]))
    results = summarise(examples)
    results = results.add_column(
        1,
        "transform",
        pa.array([keyed.spec.name if keyed else "none"] * results.num_rows, pa.string()),
    )
    results = results.append_column("run_id", pa.array([""] * results.num_rows, pa.string()))
    results = results.append_column(
        "key_fingerprint", pa.array([record["key_fingerprint"]] * results.num_rows, pa.string())
    )
    return Evaluation(
        provenance.with_record(results, record), provenance.with_record(examples, record), record
    )


@dataclass(frozen=True)
class Request:
    """One ``evaluate`` call, resolved: the model and its keyed transform (None: plain
    images), the images, labels and ids attacked, the settings (``attacks`` the names chosen),
    the plain model and the attacker's own images (None where not given), the scenario name."""

    model: torch.nn.Module
    keyed: Any
    images: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    settings: EvalSettings
    plain_model: torch.nn.Module | None
    attacker_images: OwnImages | np.ndarray | None
    name: str


def prepared_engine(request: Request) -> Engine:
    """The request's engine in this process, its attacks prepared (the bypass fitted, the
    key searched) once: it evaluates here, or hands what it prepared to Ray's actors."""
    return Engine(
        make_defender(request.model, request.keyed),
        request.settings,
        request.attacker_images,
        request.plain_model,
    )


def evaluate_here(request: Request, engine: Engine) -> pa.Table:
    """Batch after batch in this process, on the model's own device."""
    device = next(iter(request.model.parameters()), torch.zeros(0)).device
    settings, plain = request.settings, request.images
    parts = []
    for start in range(0, len(plain), settings.batch_size):
        rows = slice(start, start + settings.batch_size)
        batch = Batch(
            images_to_device(plain[rows], device),
            to_device(request.labels[rows], device),
            request.ids[rows],
        )
        parts.append(pa.table(engine.evaluate_batch(batch, "test", request.name)))
    return pa.concat_tables(parts)


def own_images(images, labels) -> OwnImages | np.ndarray | None:
    """The attacker's own images as given: with their labels (a quarter held out to judge
    its fits on), or bare (the engine labels them by querying the pipeline)."""
    if images is None:
        if labels is not None:
            raise LieRayError("attacker_labels without attacker_images: pass both, or neither")
        return None
    plain = as_uint8_images(images)
    if labels is None:
        return plain
    label_array = as_labels(labels)
    if len(label_array) != len(plain):
        raise LieRayError(
            f"{len(plain)} attacker images but {len(label_array)} attacker labels: pass one "
            "label per image"
        )
    return OwnImages.split(plain, label_array)


def fitted(own: OwnImages | np.ndarray) -> int:
    """How many of the attacker's images it fits with (the rest judge its fits)."""
    return own.fit if isinstance(own, OwnImages) else OwnImages.fit_count(len(own))


def keyed_transform(transform, key, ray: bool | str):
    """The defender's keyed transform: a registered name with its key, or a transform object."""
    if transform is None:
        if key is not None:
            raise LieRayError(
                "a key without a transform: pass transform='le' (or another "
                "name, or a Transform object) with key="
            )
        return None
    if isinstance(transform, Transform):
        if ray:
            raise LieRayError(
                "a Transform object holds its key, which must not travel to Ray "
                "actors: pass transform by name and key as a key file path"
            )
        if key is not None:
            raise LieRayError("a Transform object holds its own key: pass key=None")
        return ObjectKeyedTransform(transform)
    if isinstance(transform, type):
        raise LieRayError(
            f"transform {transform.__name__} is a class: pass an instance, or "
            "register it and pass its name with key="
        )
    if key is None:
        raise LieRayError(
            f"transform {transform!r} needs the key the model was trained with: "
            "pass key=PATH (a lie_ray key file) or a lie_ray.keys.Key"
        )
    if isinstance(key, Key):
        if ray:
            raise LieRayError(
                "a Key object must not travel to Ray actors: pass key as a key "
                "file path, read inside each actor"
            )
        return TransformSpec(transform).keyed(key)
    return TransformSpec(transform).keyed(load_key(key))


# What a caller may leave out, and how to give it: an attack that needs it is then not run
# (or, named explicitly, refused). The other needs are the defence's own.
GIVEN_BY_CALLER = {
    "plain-model": "needs plain_model=",
    "attacker-images": "needs attacker_images= (the attacker's own plain images)",
}


def choose_attacks(
    attacks, threat: str, encrypted: bool, has_plain_model: bool, has_attacker_images: bool
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The attacks to run (in the registry's order), and why any of the threat's others will
    not. lie_ray's own attacks run by default; one from outside only where it is named."""
    allowed = threat_attacks(threat, encrypted)
    if attacks == "adaptive":
        wanted, explicit = list(allowed), False
    elif attacks == "paper":
        wanted, explicit = [s for s in allowed if s.role == "paper-reading"], True
    elif isinstance(attacks, str):
        raise LieRayError(
            f"attacks={attacks!r}: pass 'adaptive', 'paper' or a list of names "
            f"from {', '.join(registry.names())}"
        )
    else:
        explicit = True
        wanted = registry.chosen(attacks)  # one line for an unknown name
        reach = threat_attacks(threat, encrypted, wanted)
        outside = [s.name for s in wanted if s not in reach]
        if outside:
            raise LieRayError(
                f"attack(s) {outside} are not in the {threat} attacker's reach: "
                f"it runs {', '.join(s.name for s in allowed)} (pass another threat=)"
            )
    given = {"plain-model": has_plain_model, "attacker-images": has_attacker_images}
    missing = {}
    for spec in wanted:
        lacking = [need for need in GIVEN_BY_CALLER if need in spec.needs and not given[need]]
        if lacking:
            missing[spec.name] = GIVEN_BY_CALLER[lacking[0]]
    if explicit and missing:
        raise LieRayError("; ".join(f"{n} {why}" for n, why in missing.items()))
    return tuple(s.name for s in wanted if s.name not in missing), missing


def threat_attacks(
    threat: str, encrypted: bool, candidates: list[AttackSpec] | None = None
) -> list[AttackSpec]:
    """Of ``candidates`` (lie_ray's own attacks by default), what the attacker of ``threat``
    can run on a defence with (or without) a key: the tiers its worst case unites; without a
    key, every attack that needs none."""
    tiers = united_tiers(WORST_CASE_OF[threat], encrypted)
    candidates = registry.default_attacks() if candidates is None else candidates
    return [s for s in candidates if s.tier in tiers and (encrypted or "transform" not in s.needs)]


def shown_worst_cases(threat: str) -> set[str]:
    return set(WORST_CASE_NAMES[: WORST_CASE_NAMES.index(THREATS[threat]) + 1])


def as_labels(labels) -> np.ndarray:
    values = (
        labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    )
    if values.ndim != 1 or values.dtype.kind not in "iu":
        raise LieRayError(
            f"labels must be a 1-D array of class indices, got {values.dtype} {values.shape}"
        )
    return values.astype(np.int64)


def as_ids(ids, labels) -> np.ndarray:
    """Image ids seed each image's random starts; by default the images' positions."""
    n = len(labels)
    if ids is None:
        return np.arange(n, dtype=np.int64)
    values = np.asarray(ids, dtype=np.int64)
    if values.shape != (n,) or len(np.unique(values)) != n:
        raise LieRayError(f"ids must be {n} distinct integers, one per image")
    return values


def data_digest(images: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> str:
    digest = hashlib.sha256()
    for array in (images, labels, ids):
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()
