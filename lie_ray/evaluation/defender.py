"""A trained scenario's defender (``lie_ray.attacks.pipeline.Defender``), rebuilt from its
checkpoint: the network, and the transform, key policy and key-batch size its run record names.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from lie_ray.attacks.pipeline import Defender
from lie_ray.errors import LieRayError
from lie_ray.infra import storage
from lie_ray.infra.checkpoints import META_FILE, STATE_FILE
from lie_ray.keys import load_key
from lie_ray.keys.policies import PolicySpec
from lie_ray.models import build_model
from lie_ray.transforms import TransformSpec


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
