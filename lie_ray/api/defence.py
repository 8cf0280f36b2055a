"""The defender a user's model and transform make: lie_ray's ``Defender`` (the fixed key), what
the chosen attacks need beside it, and the model held frozen while it is attacked. Shared by
the in-process API and its Ray actors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from lie_ray.errors import LieRayError
from lie_ray.evaluation.actor import keyless_knowledge
from lie_ray.evaluation.defender import Defender
from lie_ray.evaluation.settings import RECOVERED_KEY
from lie_ray.keys.policies import FixedPolicy
from lie_ray.transforms import Transform, TransformSpec, register, transform_class

NEEDS_ATTACKER_IMAGES = ("pba", *RECOVERED_KEY)  # fitted on / leaked from the attacker's own


class ObjectKey:
    """A transform object seen as lie_ray's keyed transform: the same cipher for every label
    (the fixed policy), identified by its fingerprint. Its class is registered by name (unless
    it is a known transform's subclass, e.g. one that instruments it), so the keyless attackers
    can draw keys of their own for it (EOT) and recover its key where pairs reveal it."""

    def __init__(self, transform: Transform):
        try:
            known = transform_class(transform.name)
        except LieRayError:  # a name lie_ray has not met: this class is that transform
            known = register(type(transform))
        if not isinstance(transform, known):
            raise LieRayError(
                f"transform {type(transform).__qualname__} is named "
                f"{transform.name!r}, which is {known.__qualname__}: give it a "
                "name of its own"
            )
        self.transform = transform
        self.spec = TransformSpec(transform.name, transform.block_size, transform.variant)
        self.block_size, self.fingerprint = transform.block_size, transform.fingerprint

    def cipher(self, label: str = "") -> Transform:
        return self.transform


def make_defender(model: torch.nn.Module, keyed) -> Defender:
    return Defender(model) if keyed is None else Defender(model, keyed, FixedPolicy())


def attack_context(defender: Defender, only: set[str], plain_model, own, settings, device) -> dict:
    """What the chosen attacks need beyond the defender: the Plain model (transfer), PBA's
    stand-in and the recovered keys (from the attacker's own images)."""
    context = {}
    if defender.encrypted and own is not None and only & set(NEEDS_ATTACKER_IMAGES):
        context.update(keyless_knowledge(defender, own, settings, device))
    if defender.encrypted and plain_model is not None and "transfer" in only:
        context["plain_model"] = plain_model
    return context


@contextmanager
def frozen(model: torch.nn.Module | None) -> Iterator[None]:
    """The model in eval mode with its weights out of autograd while it is attacked; its own
    modes and flags back afterwards (the caller's model is theirs)."""
    if model is None:
        yield
        return
    training, flags = model.training, [p.requires_grad for p in model.parameters()]
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in zip(model.parameters(), flags):
            parameter.requires_grad_(flag)
        model.train(training)
