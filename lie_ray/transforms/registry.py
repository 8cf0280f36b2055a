"""The registry of transforms and the one map from a key label to a transform.

``REGISTRY`` lists every transform class; ``check_facts`` refuses one that lacks a fact another
part of lie_ray reads from it (``Transform.REQUIRED_FACTS``). ``KeyedTransform`` is the only
thing that turns (master key, sub-key label) into a transform: key policies, encryption,
training and evaluation all hold one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.infra import plugins
from lie_ray.keys import FIXED_LABEL, IMAGE_SIZE, Key
from lie_ray.transforms.base import Transform, check_block_size
from lie_ray.transforms.ele import ELE
from lie_ray.transforms.etc import EtC
from lie_ray.transforms.ffx import FFX
from lie_ray.transforms.le import LE
from lie_ray.transforms.negative import NP
from lie_ray.transforms.pe import PE
from lie_ray.transforms.shuffle import Shuffle


def check_facts(cls: type[Transform]) -> type[Transform]:
    """``cls``, or a one-line error naming the facts it lacks (class attributes that other
    parts of lie_ray read: the report's label, the key arrays, the gradient, ...)."""
    missing = [fact for fact in Transform.REQUIRED_FACTS if not hasattr(cls, fact)]
    if missing:
        raise LieRayError(
            f"transform class {cls.__qualname__} lacks the class attribute(s) "
            f"{', '.join(missing)}: set them (Transform.REQUIRED_FACTS says what "
            "each one is for)"
        )
    return cls


REGISTRY: dict[str, type[Transform]] = {
    cls.name: check_facts(cls) for cls in (LE, ELE, PE, EtC, Shuffle, NP, FFX)
}
# Transforms written outside lie_ray: a package lists each in its own pyproject.toml,
#     [project.entry-points."lie_ray.transforms"]
#     xor = "my_package.module:XorTransform"
# and every process that meets the name (a Ray actor too) loads it from there; ``register``
# adds one for this process only. Kept apart from REGISTRY, which is the built-in family.
ENTRY_POINT_GROUP = "lie_ray.transforms"
EXTERNAL: dict[str, type[Transform]] = {}
_entry_points_loaded = False


def register(cls: type[Transform]) -> type[Transform]:
    """Make a ``Transform`` subclass known by its ``name`` in this process (usable as a class
    decorator); a name that the family or another class holds already is refused."""
    if not (isinstance(cls, type) and issubclass(cls, Transform)):
        raise LieRayError(
            f"{cls!r} is not a lie_ray.transforms.Transform subclass: derive your transform from it"
        )
    check_facts(cls)
    holder = REGISTRY.get(cls.name) or EXTERNAL.get(cls.name)
    if holder is not None and holder is not cls:
        raise LieRayError(
            f"transform name {cls.name!r} is taken by {holder.__module__}."
            f"{holder.__qualname__}: give {cls.__qualname__} another name"
        )
    EXTERNAL[cls.name] = cls
    return cls


def load_entry_points() -> None:
    """Register every transform that installed packages declare (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for cls in plugins.declared(ENTRY_POINT_GROUP, "transform"):
        register(cls)


def names() -> list[str]:
    """The family's transforms, then those registered from outside."""
    load_entry_points()
    return list(REGISTRY) + [n for n in EXTERNAL if n not in REGISTRY]


def transform_class(name: str) -> type[Transform]:
    if name in REGISTRY:
        return REGISTRY[name]
    if name not in EXTERNAL:
        load_entry_points()
    if name not in EXTERNAL:
        raise LieRayError(
            f"unknown transform {name!r}: choose one of {', '.join(names())} "
            f"(or install a package that declares it under the "
            f"{ENTRY_POINT_GROUP!r} entry points)"
        )
    return EXTERNAL[name]


def build(
    name: str,
    key: Key,
    block_size: int | None = None,
    label: str = FIXED_LABEL,
    variant: str | None = None,
    image_size: tuple[int, int] = IMAGE_SIZE,
) -> Transform:
    """The transform ``name`` keyed by ``label`` from lie_ray's master key ``key``."""
    cls = transform_class(name)
    return cls.from_key(
        key, label, cls.default_block_size(block_size, key.block_size), variant, tuple(image_size)
    )


def from_arrays(
    name: str,
    arrays: dict[str, np.ndarray],
    block_size: int | None = None,
    variant: str | None = None,
    image_size: tuple[int, int] = IMAGE_SIZE,
) -> Transform:
    """The transform ``name`` from key arrays in its reference implementation's format."""
    cls = transform_class(name)
    missing = set(cls.key_fields) - set(arrays)
    if missing:
        raise LieRayError(
            f"transform {name!r} needs key arrays {sorted(cls.key_fields)}, "
            f"missing {sorted(missing)}"
        )
    normalised = {field: key_array(name, field, value) for field, value in arrays.items()}
    return cls(normalised, block_size or cls.paper_block_sizes[0], variant, tuple(image_size))


def key_array(name: str, field: str, value):
    """One key array as the transform's validator expects it: integers (or booleans), from
    whatever a user passes (a list, any integer dtype, floats holding whole numbers); a
    ``password`` stays a str or bytes (pyffx's own key type; ``"pw"`` and ``b"pw"`` are one
    key). Anything else is refused: silently converting it would key another transform."""
    if field == "password":
        if not isinstance(value, (str, bytes)):
            raise LieRayError(
                f"transform {name!r}: key 'password' must be a str or bytes, got "
                f"{type(value).__name__}: pass e.g. 'password' or b'password'"
            )
        return value
    if isinstance(value, (str, bytes)):
        raise LieRayError(
            f"transform {name!r}: key array {field!r} must hold integers, got a "
            f"{type(value).__name__}: pass a list or numpy array"
        )
    try:
        array = np.asarray(value)
    except (TypeError, ValueError):
        array = np.asarray(value, dtype=object)
    if array.dtype.kind in "biu":
        return array
    if array.dtype.kind == "f" and np.isfinite(array).all() and (array == np.round(array)).all():
        return array.astype(np.int64)
    raise LieRayError(
        f"transform {name!r}: key array {field!r} must hold integers (or "
        f"booleans), got {array.dtype} values: pass the key as the reference "
        "implementation writes it"
    )


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
            check_block_size(self.block_size, IMAGE_SIZE)

    def resolved(self, key_block_size: int) -> TransformSpec:
        """The same spec with every default filled in."""
        cls = transform_class(self.name)
        return TransformSpec(
            self.name,
            cls.default_block_size(self.block_size, key_block_size),
            cls.check_variant(self.variant),
        )

    def keyed(self, key: Key) -> KeyedTransform:
        return KeyedTransform(self, key)


class KeyedTransform:
    """A master key seen through one transform: ``transform(label)`` is the transform for a
    sub-key label, so key policies (``lie_ray.keys.policies``) serve every transform alike."""

    def __init__(self, spec: TransformSpec, key: Key):
        self.spec, self.key = spec.resolved(key.block_size), key
        self.fingerprint, self.block_size = key.fingerprint, self.spec.block_size
        self._cache: dict[str, Transform] = {}

    def __repr__(self) -> str:
        return f"KeyedTransform({self.spec.name}, key={self.fingerprint})"

    def transform(self, label: str = FIXED_LABEL) -> Transform:
        if label not in self._cache:
            if len(self._cache) > 512:  # per-image keys: keep memory bounded
                self._cache.clear()
            self._cache[label] = build(
                self.spec.name, self.key, self.spec.block_size, label, self.spec.variant
            )
        return self._cache[label]
