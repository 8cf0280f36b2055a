"""Block-wise pixel Shuffle (AprilPyone & Kiya, IEEE TIFS 2021; ``fugokidi/block_transform``).

One key for every block: output element j of a block is its element ``perm[j]`` (elements in
(row, col, channel) order). A permutation of floats: the attack gets the TRUE gradient.
"""

from __future__ import annotations

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_permutation, log2_factorial, subkey_info
from lie_ray.transforms.base import CHANNELS, GatherTransform, from_blocks, to_blocks


class Shuffle(GatherTransform):
    name = "shuffle"
    label = "Shuffle"
    key_fields = ("perm",)
    keeps_block_stats = True
    gradient = "true"
    adaptation = False  # the TIFS defences train a plain ResNet18
    paper_block_sizes = (4, 2, 8)

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        d = block_size * block_size * CHANNELS
        return {
            "perm": derive_permutation(key, subkey_info(cls.name, label, block_size, image_size), d)
        }

    def validate(self, arrays):
        perm = np.asarray(arrays["perm"])
        d = self.block_size * self.block_size * CHANNELS
        if perm.shape != (d,) or not np.array_equal(np.sort(perm), np.arange(d)):
            raise LieRayError(
                f"shuffle key 'perm' must be a permutation of 0..{d - 1} for block "
                f"size {self.block_size}"
            )
        return {"perm": perm.astype(np.int64)}

    @property
    def key_space_log2(self) -> float:
        return log2_factorial(self.block_size * self.block_size * CHANNELS)

    def plan(self, plan):
        m, (h, w) = self.block_size, self.image_size
        perm = self.arrays["perm"]

        def shuffle(image):
            blocks = to_blocks(image, m)
            flat = blocks.reshape(len(blocks), -1)[:, perm]
            return from_blocks(flat.reshape(blocks.shape), h, w)

        return plan.move(shuffle)
