"""The defended pipeline as an attacker meets it: plain image -> cipher -> network.

``Defender`` rebuilds a trained scenario from its checkpoint and exposes classifiers of PLAIN
images with the cipher's backward pass of the attacker's choosing, keyed per image exactly as
in training (the scenario's key policy over the test ids).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lie_ray.errors import LieRayError
from lie_ray.infra import storage
from lie_ray.infra.checkpoints import META_FILE, STATE_FILE
from lie_ray.keys import Key, load_key
from lie_ray.keys.policies import KeyPolicy, PolicySpec
from lie_ray.models import build_model
from lie_ray.transforms import KeyedTransform, Transform, TransformSpec, build

Classifier = Callable[[torch.Tensor], torch.Tensor]


def load_network(checkpoint: str | Path) -> tuple[torch.nn.Module, dict]:
    """The network in eval mode and its checkpoint metadata. ``checkpoint`` is a local
    directory or a storage URI: each actor reads it itself, from whichever node it runs on."""
    if not storage.exists(storage.join(checkpoint, STATE_FILE)):
        raise LieRayError(
            f"no checkpoint at {checkpoint}: run 'lie-ray train' first, and pass "
            "its --out directory as --runs"
        )
    meta = json.loads(storage.read_bytes(storage.join(checkpoint, META_FILE)))
    model = build_model(**meta["model"])
    state = torch.load(
        io.BytesIO(storage.read_bytes(storage.join(checkpoint, STATE_FILE))),
        map_location="cpu",
        weights_only=True,
    )
    model.load_state_dict(state["model"])
    for parameter in model.parameters():  # attacks need input gradients only
        parameter.requires_grad_(False)
    return model.eval(), meta


class Defender:
    def __init__(
        self,
        model: torch.nn.Module,
        key: KeyedTransform | None = None,
        policy: KeyPolicy | None = None,
    ):
        self.model, self.key, self.policy = model, key, policy

    @property
    def encrypted(self) -> bool:
        return self.key is not None

    def encrypt(self, plain: torch.Tensor, ids: np.ndarray, backward: str = "none") -> torch.Tensor:
        if not self.encrypted:
            return plain
        return self.policy.encrypt_torch(self.key, plain, ids, "test", backward)

    def classifier(self, ids: np.ndarray, backward: str) -> Classifier:
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
        """The batch's rows grouped by the key that encrypts them (one group without a key)."""
        if not self.encrypted:
            return [np.arange(len(ids))]
        labels = self.policy.labels(np.asarray(ids), "test")
        return [np.flatnonzero(labels == label) for label in dict.fromkeys(labels)]

    def predict(self, plain: torch.Tensor, ids: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            return self.model(self.encrypt(plain, ids)).argmax(1)


def checkpoint_record(checkpoint: str | Path, meta: dict | None = None) -> dict:
    """The run record a checkpoint was written with (``lie_ray.training.record``)."""
    if meta is None:
        meta = json.loads(storage.read_bytes(storage.join(checkpoint, META_FILE)))
    if "record" not in meta:
        raise LieRayError(
            f"checkpoint {checkpoint} has no run record (an older lie_ray wrote "
            "it): train the scenario again"
        )
    return meta["record"]


def load_defender(checkpoint: str | Path, key_path: str | None) -> Defender:
    """The defender a checkpoint was trained as: its network, and the transform, key policy
    and key-batch size of its run record (never a default)."""
    model, meta = load_network(checkpoint)
    if not meta["model"]["encrypted"]:
        return Defender(model)
    definition = checkpoint_record(checkpoint, meta)["scenario"]
    spec = TransformSpec(**definition["transform"])
    key = load_key(key_path)  # its identity is checked by fingerprint below
    if meta.get("key_fingerprint") and meta["key_fingerprint"] != key.fingerprint:
        raise LieRayError(
            f"checkpoint {checkpoint} was trained with key "
            f"{meta['key_fingerprint']}, but --key is {key.fingerprint}: pass "
            "the key used for training"
        )
    return Defender(model, spec.keyed(key), policy_spec(definition).build())


def policy_spec(definition: dict) -> PolicySpec:
    """The key policy a scenario definition names, at its recorded key-batch size (recorded
    for the grouped policies only; the fixed policy has none)."""
    if definition["key_batch_size"]:
        return PolicySpec(definition["key_policy"], definition["key_batch_size"])
    return PolicySpec(definition["key_policy"])


class AttackerKeys:
    """Keys an attacker without the secret draws for the defender's transform: a FRESH set of
    ``count`` at every call (Expectation over Transformation samples the transformation anew
    at each step; reusing one set would attack a fixed ensemble instead). Reproducible from
    the attacker's own seed, independent of the defender's master key; a new instance starts
    the sequence again, so a batch's attack does not depend on what ran before it."""

    def __init__(self, spec: TransformSpec, count: int, seed: int):
        self.spec, self.count, self.draws = spec, count, 0
        self.master = Key("master", seed.to_bytes(32, "little"), spec.block_size)

    def __call__(self) -> list[Transform]:
        draw, self.draws = self.draws, self.draws + 1
        return [
            build(
                self.spec.name,
                self.master,
                self.spec.block_size,
                f"eot/{draw}/{k}",
                self.spec.variant,
            )
            for k in range(self.count)
        ]


def eot_classifier(model: torch.nn.Module, draw: Callable[[], list[Transform]]) -> Classifier:
    """Expectation over Transformation (Athalye, Carlini & Wagner, ICML 2018) over keys, with
    keys from ``draw()`` at every call (every attack step).

    Returns the mean log-probabilities over the keys, so the attack's cross-entropy is that of
    the keys' geometric-mean prediction and its gradient averages the per-key gradients; with
    one key it is exactly the BPDA gradient through that key (a test checks this)."""

    def classify(plain: torch.Tensor) -> torch.Tensor:
        log_probs = [
            torch.log_softmax(model(c.with_grad(plain, "bpda-both")), dim=1) for c in draw()
        ]
        return torch.stack(log_probs).mean(0)

    return classify
