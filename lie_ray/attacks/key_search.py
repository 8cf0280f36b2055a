"""Key search from the weights: the adaptive attack AprilPyone & Kiya ran on their own defence
(IEEE TIFS 2021). A network trained on images encrypted with one key is accurate under that
key and poor under others, so an attacker with the weights and labelled images of its own can
search the key space for the key under which the network is most accurate.

The search scores a start (a key read off a fitted stand-in, ``bypass.StandIn.read_key``, if
given) and a few keys of the attacker's own, keeps the best, and then makes greedy local moves
on its arrays: swap two entries of a field whose entries are distinct (a permutation, or FFX's
lookup), or reassign one entry of a small categorical field (a binary flip, a colour code).
A move is kept when it lowers the network's mean cross-entropy on the attacker's images,
which moves with every entry a move fixes where accuracy moves in steps. The moves read only
the arrays' format, so the search serves every transform whose arrays ``from_arrays`` takes,
plug-ins too. The true key never enters: ``key_share`` scores the result afterwards, for the
report only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lie_ray.attacks.bypass import frozen
from lie_ray.errors import LieRayError
from lie_ray.keys import Key
from lie_ray.transforms import Transform, TransformSpec, build, from_arrays, transform_class

KeyArrays = dict[str, np.ndarray]
RANDOM_KEYS = 8  # the attacker's own keys scored at the start (and read for the key format)
MAX_CATEGORIES = 16  # a field with more values, not all distinct (none in the family), stays
CHUNK = 1024  # images per forward of the network


@dataclass(frozen=True, eq=False)  # arrays do not compare as one truth value
class KeyFound:
    arrays: KeyArrays  # the key in the transform's own format
    transform: Transform  # built from ``arrays``
    accuracy: float  # the attacker's accuracy with it on its own images
    evaluations: int  # candidate keys scored, the start and random keys included
    started_from: str  # "stand-in" or "random": where the local search began


class Field:
    """The local moves on one key array: swaps within each row (last axis) of a field whose
    rows hold distinct entries, so it stays a permutation (or an injective table); else
    reassignments of one entry to another of its ``categories`` values."""

    def __init__(self, name: str, shape: tuple[int, ...], categories: int):
        self.name, self.shape, self.categories = name, shape, categories
        self.size = int(np.prod(shape))
        self.pairs = np.triu_indices(shape[-1], 1) if categories == 0 else None

    @property
    def count(self) -> int:
        if self.pairs is None:
            return self.size * (self.categories - 1)
        return self.size // self.shape[-1] * len(self.pairs[0])

    def apply(self, value: np.ndarray, move: int) -> np.ndarray:
        """A copy of ``value`` with move number ``move`` (0..count-1) made."""
        if self.pairs is None:
            flat = value.reshape(-1).copy()
            entry, step = divmod(move, self.categories - 1)
            flat[entry] = (int(flat[entry]) + 1 + step) % self.categories
            return flat.reshape(value.shape)
        rows = value.reshape(-1, self.shape[-1]).copy()
        row, pair = divmod(move, len(self.pairs[0]))
        a, b = self.pairs[0][pair], self.pairs[1][pair]
        rows[row, [a, b]] = rows[row, [b, a]]
        return rows.reshape(value.shape)


def search_fields(keys: list[KeyArrays]) -> list[Field]:
    """The searchable fields, told apart by what the keys drawn show: distinct entries along
    the last axis in every key, or few values. Fields neither (a password) are not searched."""
    fields = []
    for name, first in keys[0].items():
        values = [np.asarray(key[name]) for key in keys]
        if first.ndim == 0 or first.dtype.kind not in "biu":
            continue
        distinct = all((np.diff(np.sort(v, -1), axis=-1) != 0).all() for v in values)
        if distinct and first.shape[-1] > 1:
            fields.append(Field(name, first.shape, 0))
            continue
        categories = max(2, max(int(v.max()) for v in values) + 1)
        if categories <= MAX_CATEGORIES:
            fields.append(Field(name, first.shape, categories))
    return fields


class Scorer:
    """Mean cross-entropy and accuracy of the network on the attacker's images under a
    candidate key: one forward of the network per candidate over all images, batched."""

    def __init__(
        self,
        network: torch.nn.Module,
        spec: TransformSpec,
        images: torch.Tensor,
        labels: torch.Tensor,
    ):
        self.network, self.spec, self.images = network, spec, images
        self.labels = labels.to(images.device)
        self.evaluations = 0

    def transform(self, arrays: KeyArrays) -> Transform:
        return from_arrays(self.spec.name, arrays, self.spec.block_size, self.spec.variant)

    def __call__(self, arrays: KeyArrays) -> tuple[float, float]:
        self.evaluations += 1
        transform = self.transform(arrays)
        with torch.no_grad():
            logits = torch.cat(
                [self.network(transform.with_grad(chunk)) for chunk in self.images.split(CHUNK)]
            )
        loss = F.cross_entropy(logits, self.labels).item()
        return loss, (logits.argmax(1) == self.labels).float().mean().item()


def attacker_keys(spec: TransformSpec, seed: int, count: int) -> list[KeyArrays]:
    """Keys of the attacker's own, drawn as the transform draws its keys, from ``seed``
    (``catalogue.eot.AttackerKeys`` draws the same way)."""
    master = Key("master", seed.to_bytes(32, "little"), spec.block_size)
    return [
        build(spec.name, master, spec.block_size, f"search/{i}", spec.variant).key_arrays()
        for i in range(count)
    ]


def search_key(
    network: torch.nn.Module,
    spec: TransformSpec,
    images: torch.Tensor,
    labels: torch.Tensor,
    budget: int,
    seed: int,
    start: KeyArrays | None = None,
) -> KeyFound:
    """The key under which ``network`` is most accurate on the attacker's labelled ``images``
    (float NCHW in [0, 1]) that ``budget`` candidate evaluations find: the best of ``start``
    and random keys, improved by first-improvement local search in a random order of moves
    (drawn from ``seed``) until no single move lowers the cross-entropy or the budget ends."""
    cls = transform_class(spec.name)
    spec = TransformSpec(spec.name, spec.block_size or cls.paper_block_sizes[0], spec.variant)
    randoms = attacker_keys(spec, seed, RANDOM_KEYS)
    starts = [("stand-in", start)] if start is not None else []
    starts += [("random", key) for key in randoms[: max(1, min(RANDOM_KEYS, budget - len(starts)))]]
    fields = search_fields(randoms + [key for _, key in starts])
    ends = np.cumsum([field.count for field in fields])
    score = Scorer(network, spec, images, labels)
    rng = np.random.default_rng(seed)
    with frozen(network):
        scored = [(score(key), origin, key) for origin, key in starts]
        (loss, hits), origin, best = min(scored, key=lambda entry: entry[0][0])
        improved = True
        while improved and score.evaluations < budget:
            improved = False
            for move in rng.permutation(int(ends[-1]) if len(ends) else 0):
                if score.evaluations >= budget:
                    break
                which = int(np.searchsorted(ends, move, side="right"))
                field = fields[which]
                local = int(move - (ends[which - 1] if which else 0))
                candidate = {**best, field.name: field.apply(np.asarray(best[field.name]), local)}
                candidate_loss, candidate_hits = score(candidate)
                if candidate_loss < loss:
                    best, loss, hits, improved = candidate, candidate_loss, candidate_hits, True
    return KeyFound(best, score.transform(best), hits, score.evaluations, origin)


def key_share(found: KeyFound | Mapping[str, np.ndarray], true: Mapping[str, np.ndarray]) -> float:
    """The fraction of key entries, over the fields both keys hold (concatenated), that equal
    the true key's: 1.0 is the key itself. Scored after the search, never inside it."""
    arrays = found.arrays if isinstance(found, KeyFound) else found
    common = [name for name in arrays if name in true]
    for name in common:
        if np.shape(arrays[name]) != np.shape(true[name]):
            raise LieRayError(
                f"key field {name!r} has shape {np.shape(arrays[name])}, the true key's "
                f"{np.shape(true[name])}: compare keys of one transform and block size"
            )
    total = sum(np.size(true[name]) for name in common)
    equal = sum(int((np.asarray(arrays[n]) == np.asarray(true[n])).sum()) for n in common)
    return equal / total if total else 0.0
