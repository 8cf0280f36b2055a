"""EtC: encryption-then-compression block scrambling (Chuman, Kurihara & Kiya), as in
``MADONOKOUKI/Block-wise-Scrambled-Image-Recognition`` (``etc_encryption.py``).

Key arrays, one entry per block, in that reference's encoding: ``rotate`` (0, 1, 2 = 90, 180,
270 degrees counter-clockwise, 3 = none), ``negaposi`` (0 = negative-positive, 1 = keep),
``reverse`` (0 = flip vertically, 1 = horizontally, 2 = none), ``channel`` (colour code 0..5)
and ``shuffle`` (output block i = input block shuffle[i]). Per block: rotate -> negative-positive
-> flip -> colour shuffle; then the blocks are shuffled.

Variants: ``paper`` (default) shuffles colours by true permutations (the table of PE);
``reference`` reproduces the reference's aliased in-place assignment, which duplicates a
channel for codes 1-5 and so cannot be decrypted (the published ELE-paper numbers used it).
Every step moves or negates values: the attack gets the TRUE gradient.
"""

from __future__ import annotations

import math

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_choices, derive_permutation, log2_factorial, subkey_info
from lie_ray.transforms.base import CHANNELS, GatherTransform, from_blocks, to_blocks
from lie_ray.transforms.pe import COLOUR_TABLE, colour_shuffle

LOSSY_TABLE = np.array([[0, 1, 2], [1, 1, 2], [2, 1, 2], [0, 2, 2], [2, 2, 2], [1, 2, 1]])
FIELDS = {"rotate": 4, "negaposi": 2, "reverse": 3, "channel": 6}


def per_block(m: int, image_size, operation):
    """A step applying ``operation(blocks)`` to the (n_blocks, M, M, C) view of an image."""
    h, w = image_size
    return lambda image: from_blocks(operation(to_blocks(image, m)), h, w)


class EtC(GatherTransform):
    name = "etc"
    label = "EtC"
    key_fields = ("rotate", "negaposi", "reverse", "channel", "shuffle")
    sia_gan_lpips = 0.2090
    gradient = "true"
    adaptation = True
    variants = ("paper", "reference")
    paper_block_sizes = (4,)

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        n = (image_size[0] // block_size) * (image_size[1] // block_size)
        info = subkey_info(cls.name, label, block_size, image_size)
        arrays = {
            field: derive_choices(key, f"{info}/{field}", n, high) for field, high in FIELDS.items()
        }
        arrays["shuffle"] = derive_permutation(key, f"{info}/shuffle", n)
        return arrays

    def validate(self, arrays):
        n = self.n_blocks
        out = {}
        for field, high in FIELDS.items():
            value = np.asarray(arrays[field])
            if value.shape != (n,) or not np.isin(value, range(high)).all():
                raise LieRayError(f"EtC key {field!r} must hold {n} values in 0..{high - 1}")
            out[field] = value.astype(np.int64)
        shuffle = np.asarray(arrays["shuffle"])
        if shuffle.shape != (n,) or not np.array_equal(np.sort(shuffle), np.arange(n)):
            raise LieRayError(f"EtC key 'shuffle' must be a permutation of 0..{n - 1}")
        out["shuffle"] = shuffle.astype(np.int64)
        return out

    @property
    def n_blocks(self) -> int:
        return (self.image_size[0] // self.block_size) * (self.image_size[1] // self.block_size)

    @property
    def key_space_log2(self) -> float:
        n = self.n_blocks
        return n * (3 + 1 + math.log2(6)) + log2_factorial(n)

    @property
    def invertible(self) -> bool:
        return self.variant == "paper" or not self.arrays["channel"].any()

    def plan(self, plan):
        m, size, key = self.block_size, self.image_size, self.arrays

        def rotate(blocks):
            out = blocks.copy()
            for turns in (1, 2, 3):  # code 0, 1, 2 -> 1, 2, 3 quarter turns
                chosen = key["rotate"] == turns - 1
                out[chosen] = np.rot90(blocks[chosen], k=turns, axes=(1, 2))
            return out

        def flip(blocks):
            out = blocks.copy()
            for code, axis in ((0, 1), (1, 2)):
                chosen = key["reverse"] == code
                out[chosen] = np.flip(blocks[chosen], axis=axis)
            return out

        plan.move(per_block(m, size, rotate))
        negate = np.broadcast_to(
            (key["negaposi"] == 0)[:, None, None, None], (self.n_blocks, m, m, CHANNELS)
        )
        plan.negate(from_blocks(np.ascontiguousarray(negate), *size))
        plan.move(per_block(m, size, flip))
        table = COLOUR_TABLE if self.variant == "paper" else LOSSY_TABLE
        codes = from_blocks(
            np.ascontiguousarray(
                np.broadcast_to(key["channel"][:, None, None, None], (self.n_blocks, m, m, 1))
            ),
            *size,
        )
        plan.move(colour_shuffle(table, codes.reshape(-1)))
        return plan.move(per_block(m, size, lambda blocks: blocks[key["shuffle"]]))
