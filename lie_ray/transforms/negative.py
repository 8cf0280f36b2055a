"""Block-wise negative-positive "bit flipping", NP (AprilPyone & Kiya, IEEE TIFS 2021).

One binary key for every block: at key positions v -> 1 - v on [0, 1] floats (255 - v on
bytes). The reference draws the key as ``randperm(d) > d / 2``, so exactly d/2 - 1 positions
flip (23 of 48 at M = 4); lie_ray derives it the same way from its master key. Affine on
floats: the attack gets the TRUE gradient.
"""

from __future__ import annotations

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_permutation, log2_binomial, subkey_info
from lie_ray.transforms.base import CHANNELS, GatherTransform, tile_block_mask


def binary_key(key, name: str, label: str, block_size: int, image_size) -> np.ndarray:
    """The reference's binary key: a random permutation of 0..d-1, thresholded at d / 2."""
    d = block_size * block_size * CHANNELS
    perm = derive_permutation(key, subkey_info(name, label, block_size, image_size), d)
    return perm > d / 2


def check_flip(arrays, block_size: int, name: str) -> np.ndarray:
    flip = np.asarray(arrays["flip"])
    d = block_size * block_size * CHANNELS
    if flip.shape != (d,) or not np.isin(flip, (0, 1)).all():
        raise LieRayError(f"{name} key 'flip' must hold {d} booleans for block size {block_size}")
    return flip.astype(bool)


def reference_key_space_log2(block_size: int) -> float:
    """log2 C(d, #ones) for keys drawn as the reference draws them."""
    d = block_size * block_size * CHANNELS
    return log2_binomial(d, int(np.sum(np.arange(d) > d / 2)))


class NP(GatherTransform):
    name = "np"
    label = "NP"
    key_fields = ("flip",)
    brute_forceable = True  # binary flip keys per block (privacy.brute_force)
    gradient = "true"
    adaptation = False
    paper_block_sizes = (4, 2, 8)

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        return {"flip": binary_key(key, cls.name, label, block_size, image_size)}

    def validate(self, arrays):
        return {"flip": check_flip(arrays, self.block_size, self.name)}

    @property
    def key_space_log2(self) -> float:
        return reference_key_space_log2(self.block_size)

    def plan(self, plan):
        return plan.negate(tile_block_mask(self.arrays["flip"], self.block_size, self.image_size))
