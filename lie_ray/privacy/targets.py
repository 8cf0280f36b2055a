"""The transforms the privacy attacks aim at, behind one small interface.

Every attack needs the same few things from a transform: encrypt and decrypt NHWC images, the
true key as reference-format arrays (to check a recovered key against), a transform rebuilt
from recovered arrays (to decrypt with it), and its key-space size. The transform family
(``lie_ray.transforms``) provides all of them; until it is present LE alone is served here,
from ``lie_ray.cipher``.
"""
from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np

from lie_ray.cipher import from_permutation, nibble_count
from lie_ray.errors import LieRayError
from lie_ray.keys import Key


class Target(Protocol):
    fingerprint: str
    key_space_log2: float

    def encrypt(self, images: np.ndarray) -> np.ndarray: ...
    def decrypt(self, images: np.ndarray) -> np.ndarray: ...
    def key_arrays(self) -> dict[str, np.ndarray]: ...


class LeTarget:
    """Tanaka's LE as a target: key arrays ``{"perm": permutation of 0..2d-1}``."""

    def __init__(self, perm: np.ndarray, block_size: int):
        self.cipher = from_permutation(perm, block_size)
        self.block_size = block_size
        self.fingerprint = self.cipher.fingerprint
        self.key_space_log2 = math.lgamma(nibble_count(block_size) + 1) / math.log(2)

    def encrypt(self, images: np.ndarray) -> np.ndarray:
        return self.cipher.encrypt(images)

    def decrypt(self, images: np.ndarray) -> np.ndarray:
        return self.cipher.decrypt(images)

    def key_arrays(self) -> dict[str, np.ndarray]:
        return {"perm": self.cipher.perm.copy()}


def family():
    """``lie_ray.transforms`` when it is installed, else None."""
    try:
        from lie_ray import transforms
    except ImportError:
        return None
    return transforms


def names() -> list[str]:
    module = family()
    return list(module.names()) if module is not None else ["le"]


def check_names(chosen: list[str]) -> list[str]:
    known = names()
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise LieRayError(f"unknown transform(s) {', '.join(unknown)}: choose from "
                          f"{', '.join(known)} (--transforms)")
    return chosen


def build(name: str, key: Key, block_size: int, label: str) -> Target:
    """The transform ``name`` under the sub-key ``label`` of master ``key``."""
    module = family()
    if module is not None:
        return module.build(name, key, block_size=block_size, label=label)
    check_names([name])
    return LeTarget(_derived_le_permutation(key, block_size, label), block_size)


def from_arrays(name: str, arrays: dict[str, Any], block_size: int) -> Target:
    """A transform from (recovered) key arrays, in the reference format of ``key_arrays``."""
    module = family()
    if module is not None:
        return module.from_arrays(name, arrays, block_size=block_size)
    check_names([name])
    return LeTarget(np.asarray(arrays["perm"]), block_size)


def _derived_le_permutation(key: Key, block_size: int, label: str) -> np.ndarray:
    if key.block_size != block_size:
        raise LieRayError(f"key {key.fingerprint} is for block size {key.block_size}, not "
                          f"{block_size}: pass a key made with 'lie-ray keygen --block-size "
                          f"{block_size}'")
    return key.cipher(label if key.derives_subkeys else "fixed").perm
