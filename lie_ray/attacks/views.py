"""What each attacker is handed: one view per tier (``lie_ray.attacks.spec``), built by the
engine for every attack from what its tier's attacker has, and nothing more.

``Keyless`` holds the network's weights, the transform's class and public parameters (a
``TransformSpec``: name, block size, variant) and the key policy (public: which images share a
key), the attacker's own labelled plain images (``OwnImages``: held out of training), a plain
model where one exists, and an ``Oracle`` of the deployed pipeline: the outputs it gives for
images of the attacker's choosing, never a gradient, and no reference to the key. ``Leaked``
adds k plain/encrypted pairs of the attacker's images; ``WithKey`` adds the keyed pipeline
itself (``Defender``), for the with-key and channel tiers. Nothing in a keyless or leaked view
reaches the key (``tests/test_attack_registry.py`` walks every object reachable from one to
check).

Python offers no sandbox: code that imports lie_ray's internals can reach anything in its
process. What the views guarantee is what an attack is HANDED, so that an attack of a tier is
written against that tier's knowledge, and a keyless figure is keyless by construction.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lie_ray.attacks.pipeline import Defender, key_groups

if TYPE_CHECKING:
    from lie_ray.attacks.outcome import Outcome
    from lie_ray.keys.policies import KeyPolicy
    from lie_ray.transforms import TransformSpec

# The pipelines oracles answer for, by handle. An oracle keeps only its handle, so nothing
# reachable from a view holds the pipeline (and its key); the engine that made the oracle
# holds the pipeline, and the entry goes with it.
_SERVED: weakref.WeakValueDictionary[int, Defender] = weakref.WeakValueDictionary()
_HANDLES = itertools.count(1)


class Oracle:
    """Queries to the deployed pipeline: the logits (or predicted classes) it outputs for plain
    images, each keyed as the defender keys that image id. No gradient flows through it."""

    __slots__ = ("_handle",)

    def __init__(self, pipeline: Defender):
        self._handle = next(_HANDLES)
        _SERVED[self._handle] = pipeline

    def __repr__(self) -> str:
        return f"Oracle(#{self._handle})"

    def _pipeline(self) -> Defender:
        try:
            return _SERVED[self._handle]
        except KeyError:
            raise RuntimeError("this oracle's pipeline is gone: its evaluation ended") from None

    def logits(self, images: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        pipeline = self._pipeline()
        with torch.no_grad():
            return pipeline.model(pipeline.encrypt(images, ids))

    def predict(self, images: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        return self.logits(images, ids).argmax(1)

    def logits_in_chunks(self, images: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """The pipeline's logits on a whole set of the attacker's own images (ids 0..n-1), a
        chunk at a time so a large set never makes one large batch."""
        ids = np.arange(len(images))
        return torch.cat(
            [
                self.logits(images[s : s + chunk], ids[s : s + chunk])
                for s in range(0, len(images), chunk)
            ]
        )

    def single_key(self, representative_id: int):
        """The pipeline's logits with the key of ``representative_id`` for every row: for
        library attacks, which query subsets of the rows of one key (``key_groups``)."""
        return lambda images: self.logits(images, np.full(len(images), representative_id))


@dataclass(frozen=True)
class OwnImages:
    """The attacker's own labelled plain images (uint8 NHWC, int64 labels), never trained on
    and never attacked: the first ``fit`` are what it fits its bypass on, searches keys with
    and leaks pairs of; the rest are what it judges its fits on (held-out agreement with the
    deployed pipeline, which it measures by querying it: an attacker-side figure)."""

    images: np.ndarray
    labels: np.ndarray
    fit: int

    def __post_init__(self):
        if not 0 < self.fit <= len(self.images) or len(self.labels) != len(self.images):
            raise ValueError(
                f"{len(self.images)} attacker images, {len(self.labels)} labels, fit {self.fit}"
            )

    @staticmethod
    def fit_count(n: int, judged: float = 0.25) -> int:
        """Of ``n`` images, how many to fit on: all but the last ``judged`` share (at least
        one image held out where there are two or more)."""
        return n - (max(1, int(n * judged)) if n > 1 else 0)

    @classmethod
    def split(cls, images: np.ndarray, labels: np.ndarray) -> OwnImages:
        """Fit on the first part, judge on the rest (``fit_count``)."""
        return cls(images, labels, cls.fit_count(len(images)))

    @property
    def fitting(self) -> tuple[np.ndarray, np.ndarray]:
        return self.images[: self.fit], self.labels[: self.fit]

    @property
    def judging(self) -> tuple[np.ndarray, np.ndarray]:
        """The held-out part (the fitting part again where nothing was held out)."""
        if self.fit == len(self.images):
            return self.fitting
        return self.images[self.fit :], self.labels[self.fit :]


@dataclass(frozen=True)
class Keyless:
    """The keyless attacker's knowledge. ``prepared``: what its attack's ``prepare`` built
    from this view, once per scenario; ``earlier``: the outcomes, at this epsilon and on
    exactly these images, of the attacks that ran before it and that its tier could run."""

    network: torch.nn.Module
    transform: TransformSpec | None  # None: the network sees plain images
    policy: KeyPolicy | None
    oracle: Oracle
    attacker_images: np.ndarray | None = None  # uint8 NHWC, never the attacked images
    own: OwnImages | None = None  # the same images with their labels and held-out part
    plain_model: torch.nn.Module | None = None
    prepared: Any = None
    earlier: Mapping[str, Outcome] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def encrypted(self) -> bool:
        return self.transform is not None

    def key_groups(self, ids: np.ndarray) -> list[np.ndarray]:
        """The batch's rows by the key that encrypts them (the policy is public)."""
        return key_groups(self.policy if self.encrypted else None, ids)


@dataclass(frozen=True)
class Leaked(Keyless):
    """Plus k (plain, encrypted) pairs of the attacker's own images: uint8 NHWC each."""

    pairs: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class WithKey(Leaked):
    """Plus the keyed pipeline itself: the with-key and channel attackers."""

    pipeline: Defender | None = None


VIEWS = {"keyless": Keyless, "leaked": Leaked, "with-key": WithKey, "channel": WithKey}
