"""The family of key-based image transforms, behind one interface (``../shared/docs/TRANSFORMS.md``).

    from lie_ray import transforms
    t = transforms.build("shuffle", load_key("master.json"), block_size=4)  # label "fixed"
    y = t.encrypt(x)                  # uint8 NHWC NumPy or torch NCHW; float32 for ffx
    assert (t.decrypt(y) == x).all()
    t.fingerprint, t.key_space_log2, t.gradient, t.key_arrays()
    transforms.from_arrays("shuffle", {"perm": perm}, block_size=4)
    out = t.with_grad(x_float)        # the attack's forward: true gradient or BPDA

Adding a transform is one module (a ``Transform`` subclass) and one line in ``REGISTRY``.
Nothing here imports torch: Ray Data's encryption actors stay light.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys import FIXED_LABEL, IMAGE_SIZE, Key
from lie_ray.transforms.base import Transform
from lie_ray.transforms.ele import ELE
from lie_ray.transforms.etc import EtC
from lie_ray.transforms.ffx import FFX
from lie_ray.transforms.le import LE
from lie_ray.transforms.negative import NP
from lie_ray.transforms.pe import PE
from lie_ray.transforms.shuffle import Shuffle

REGISTRY: dict[str, type[Transform]] = {cls.name: cls for cls in (
    LE, ELE, PE, EtC, Shuffle, NP, FFX)}


def names() -> list[str]:
    return list(REGISTRY)


def transform_class(name: str) -> type[Transform]:
    if name not in REGISTRY:
        raise LieRayError(f"unknown transform {name!r}: choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def build(name: str, key: Key, block_size: int | None = None, label: str = FIXED_LABEL,
          variant: str | None = None, image_size: tuple[int, int] = IMAGE_SIZE) -> Transform:
    """The transform ``name`` keyed by ``label`` from lie_ray's master key ``key``."""
    cls = transform_class(name)
    if block_size is None:
        block_size = key.block_size if name == "le" else cls.paper_block_sizes[0]
    return cls.from_key(key, label, block_size, variant, tuple(image_size))


def from_arrays(name: str, arrays: dict[str, np.ndarray], block_size: int | None = None,
                variant: str | None = None, image_size: tuple[int, int] = IMAGE_SIZE
                ) -> Transform:
    """The transform ``name`` from key arrays in its reference implementation's format."""
    cls = transform_class(name)
    missing = set(required_arrays(cls)) - set(arrays)
    if missing:
        raise LieRayError(f"transform {name!r} needs key arrays {sorted(required_arrays(cls))}, "
                          f"missing {sorted(missing)}")
    return cls(dict(arrays), block_size or cls.paper_block_sizes[0], variant, tuple(image_size))


def required_arrays(cls: type[Transform]) -> tuple[str, ...]:
    return {"le": ("perm",), "shuffle": ("perm",), "np": ("flip",), "ffx": ("flip",),
            "pe": ("inv", "colour"), "ele": ("perms", "block_perm"),
            "etc": ("rotate", "negaposi", "reverse", "channel", "shuffle")}.get(cls.name, ())


def with_grad(transform, images, backward: str | None = None):
    """The attack's forward through ``transform`` (a ``Transform`` or an LE ``BlockCipher``)."""
    if isinstance(transform, Transform):
        return transform.with_grad(images, backward)
    from lie_ray.cipher.differentiable import cipher_with_grad

    return cipher_with_grad(transform, images, "bpda-both" if backward in (None, "default")
                            else backward)


@dataclass(frozen=True)
class TransformSpec:
    """A transform by name with its parameters: plain data, safe in configs and tables.
    ``block_size`` None: the key's block size for LE, the paper's first for the others."""

    name: str = "le"
    block_size: int | None = None
    variant: str | None = None

    def __post_init__(self):
        cls = transform_class(self.name)
        cls.check_variant(self.variant)
        if self.block_size is not None:
            from lie_ray.transforms.base import check_block_size

            check_block_size(self.block_size, IMAGE_SIZE)

    def resolved(self, key_block_size: int) -> "TransformSpec":
        """The same spec with every default filled in."""
        cls = transform_class(self.name)
        block = self.block_size or (key_block_size if self.name == "le"
                                    else cls.paper_block_sizes[0])
        return TransformSpec(self.name, block, cls.check_variant(self.variant))

    def keyed(self, key: Key) -> "KeyedTransform":
        return KeyedTransform(self, key)


class KeyedTransform:
    """A master key seen through one transform: ``cipher(label)`` is the transform for a
    sub-key label, so key policies (``lie_ray.keys.policies``) serve every transform alike."""

    def __init__(self, spec: TransformSpec, key: Key):
        self.spec, self.key = spec.resolved(key.block_size), key
        self.fingerprint, self.block_size = key.fingerprint, self.spec.block_size
        self._cache: dict[str, Transform] = {}

    def __repr__(self) -> str:
        return f"KeyedTransform({self.spec.name}, key={self.fingerprint})"

    @property
    def derives_subkeys(self) -> bool:
        return self.key.derives_subkeys

    def cipher(self, label: str = FIXED_LABEL) -> Transform:
        if label not in self._cache:
            if len(self._cache) > 512:  # per-image keys: keep memory bounded
                self._cache.clear()
            self._cache[label] = build(self.spec.name, self.key, self.spec.block_size, label,
                                       self.spec.variant)
        return self._cache[label]


__all__ = ["REGISTRY", "Transform", "TransformSpec", "KeyedTransform", "build", "from_arrays",
           "names", "with_grad"]
