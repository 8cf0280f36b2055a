"""The defender a user's model and transform make: lie_ray's ``Defender`` (the fixed key), and
the model held frozen while it is attacked. Shared by the in-process API and its Ray actors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from lie_ray.attacks.pipeline import Defender
from lie_ray.errors import LieRayError
from lie_ray.keys.policies import FixedPolicy
from lie_ray.transforms import Transform, TransformSpec, register, transform_class


class ObjectKeyedTransform:
    """A transform object in the place of lie_ray's ``KeyedTransform``: the same transform for
    every sub-key label (the fixed policy), identified by its fingerprint. Its class is
    registered by name (unless it is a known transform's subclass, e.g. one that instruments
    it), so the keyless attackers can draw keys of their own for it (EOT) and recover its key
    where pairs reveal it."""

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
        self._transform = transform
        self.spec = TransformSpec(transform.name, transform.block_size, transform.variant)
        self.block_size, self.fingerprint = transform.block_size, transform.fingerprint

    def __repr__(self) -> str:
        return f"ObjectKeyedTransform({self.spec.name}, key={self.fingerprint})"

    def transform(self, label: str = "") -> Transform:
        return self._transform


def make_defender(model: torch.nn.Module, keyed) -> Defender:
    return Defender(model) if keyed is None else Defender(model, keyed, FixedPolicy())


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
