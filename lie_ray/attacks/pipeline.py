"""The defended pipeline as the key holder runs it: plain image -> keyed transform -> network.

``Defender`` exposes classifiers of PLAIN images with the transform's backward pass of the
attacker's choosing, keyed per image exactly as in training (the scenario's key policy over
the test ids). Only the with-key and channel attackers are handed one
(``lie_ray.attacks.views``); the others reach the pipeline through an ``Oracle``.
``lie_ray.evaluation.defender`` builds one from a checkpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from lie_ray.keys.policies import KeyPolicy
    from lie_ray.transforms import KeyedTransform

Classifier = Callable[[torch.Tensor], torch.Tensor]


def key_groups(policy: KeyPolicy | None, ids: np.ndarray) -> list[np.ndarray]:
    """A batch's rows grouped by the key that encrypts them (one group without a key). The
    policy is public (which images share a key), so any attacker may group by it."""
    if policy is None:
        return [np.arange(len(ids))]
    labels = policy.labels(np.asarray(ids), "test")
    return [np.flatnonzero(labels == label) for label in dict.fromkeys(labels)]


class Defender:
    def __init__(
        self,
        model: torch.nn.Module,
        key: KeyedTransform | None = None,
        policy: KeyPolicy | None = None,
    ):
        self.model, self.key, self.policy = model, key, policy

    def __repr__(self) -> str:  # names the key by fingerprint only
        key = "none" if self.key is None else self.key.fingerprint
        return f"Defender(key={key}, policy={getattr(self.policy, 'name', None)})"

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def encrypt(self, plain: torch.Tensor, ids: np.ndarray, backward: str = "none") -> torch.Tensor:
        if not self.encrypted:
            return plain
        return self.policy.encrypt_torch(self.key, plain, ids, "test", backward)

    def classifier(self, ids: np.ndarray, backward: str | None) -> Classifier:
        """model(encrypt(x)) with the chosen cipher backward: 'none' is the paper's protocol."""
        return lambda plain: self.model(self.encrypt(plain, ids, backward))

    def single_key_classifier(self, representative_id: int, backward: str = "none") -> Classifier:
        """model(encrypt(x)) with the key of ``representative_id`` for EVERY row: for library
        attacks, which query arbitrary subsets of the rows they are given (the rows of one
        key here: ``key_groups``)."""
        return lambda plain: self.model(
            self.encrypt(plain, np.full(len(plain), representative_id), backward)
        )

    def key_groups(self, ids: np.ndarray) -> list[np.ndarray]:
        return key_groups(self.policy if self.encrypted else None, ids)

    def predict(self, plain: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.encrypt(plain, ids)).argmax(1)
