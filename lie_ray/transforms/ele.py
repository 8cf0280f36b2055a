"""ELE: extended learnable encryption (Madono et al., AAAI-20 WS;
``MADONOKOUKI/Block-wise-Scrambled-Image-Recognition``).

LE's nibble operation with a DIFFERENT key in every block (the block at grid row r, column c
uses key r * (W/M) + c), then the blocks are shuffled: output block i = input block
``block_perm[i]``. Key arrays: ``perms`` (n_blocks, 2d) and ``block_perm`` (n_blocks,).

Runs on LE's own gather kernels: ``transforms.nibble.tables`` builds per-block tables, and the
block shuffle is folded into them, so encryption is the same two gathers as LE and the BPDA
backward of ``cipher_with_grad`` applies unchanged.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_permutation, derive_u64, log2_factorial, subkey_info
from lie_ray.keys.permutation import nibble_count
from lie_ray.transforms.base import CHANNELS
from lie_ray.transforms.le import NibbleTransform
from lie_ray.transforms.nibble.block import NibbleCipher
from lie_ray.transforms.nibble.tables import GatherTables, block_element_offsets, build_tables

SOURCE_FIELDS = ("hi_src", "hi_shift", "lo_src", "lo_shift", "xor_mask")
DEST_FIELDS = (
    "hi_dest",
    "hi_dest_is_hi",
    "hi_dest_flipped",
    "lo_dest",
    "lo_dest_is_hi",
    "lo_dest_flipped",
)


def compose(
    tables: GatherTables, pre: np.ndarray | None = None, post: np.ndarray | None = None
) -> GatherTables:
    """Tables for ``post`` o cipher o ``pre``, where a gather g maps x to x[g]."""
    fields = vars(tables).copy()
    if post is not None:  # out'[i] = out[post[i]]
        for name in SOURCE_FIELDS:
            fields[name] = fields[name][post]
        back = np.argsort(post)
        for name in ("hi_dest", "lo_dest"):
            fields[name] = back[fields[name]]
    if pre is not None:  # the cipher reads x[pre[k]] where it read x[k]
        for name in ("hi_src", "lo_src"):
            fields[name] = pre[fields[name]]
        back = np.argsort(pre)
        for name in DEST_FIELDS:
            fields[name] = fields[name][back]
    return dataclasses.replace(tables, **fields)


class PerBlockCipher(NibbleCipher):
    """Nibble tables with a key per block, ending with a block shuffle, for one image size."""

    def __init__(
        self,
        perms: np.ndarray,
        block_perm: np.ndarray,
        block_size: int,
        image_size: tuple[int, int],
        fingerprint: str,
    ):
        super().__init__(block_size, CHANNELS, fingerprint)
        self.image_size, self.perms, self.block_perm = image_size, perms, block_perm
        self.reversed_mask = perms > block_size * block_size * CHANNELS
        self._tables: dict[tuple, GatherTables] = {}

    def tables(self, direction, height, width, layout) -> GatherTables:
        if (height, width) != tuple(self.image_size):
            raise LieRayError(
                f"this ELE key is for {self.image_size[0]}x{self.image_size[1]} "
                f"images, got {height}x{width}"
            )
        cache_key = (direction, layout)
        if cache_key not in self._tables:
            m = self.block_size
            offsets = block_element_offsets(height, width, CHANNELS, m, layout)
            shuffle = np.empty(height * width * CHANNELS, dtype=np.int64)
            shuffle[offsets.reshape(-1)] = offsets[self.block_perm].reshape(-1)
            if direction == "encrypt":
                tables = build_tables(
                    self.perms, self.reversed_mask, height, width, CHANNELS, m, layout
                )
                tables = compose(tables, post=shuffle)
            else:
                tables = build_tables(
                    np.argsort(self.perms, axis=1, kind="stable"),
                    self.reversed_mask,
                    height,
                    width,
                    CHANNELS,
                    m,
                    layout,
                )
                tables = compose(tables, pre=np.argsort(shuffle))
            self._tables[cache_key] = tables
        return self._tables[cache_key]


class ELE(NibbleTransform):
    name = "ele"
    label = "ELE"
    key_fields = ("perms", "block_perm")
    paper_block_sizes = (4,)
    sia_gan_lpips = 0.1512

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        n = (image_size[0] // block_size) * (image_size[1] // block_size)
        size = nibble_count(block_size, CHANNELS)
        info = subkey_info(cls.name, label, block_size, image_size)
        draws = derive_u64(key, f"{info}/perms/{n}x{size}", n * size).reshape(n, size)
        return {
            "perms": np.argsort(draws, axis=1, kind="stable").astype(np.int64),
            "block_perm": derive_permutation(key, f"{info}/blocks", n),
        }

    def validate(self, arrays):
        n = (self.image_size[0] // self.block_size) * (self.image_size[1] // self.block_size)
        size = nibble_count(self.block_size, CHANNELS)
        perms, block_perm = np.asarray(arrays["perms"]), np.asarray(arrays["block_perm"])
        if perms.shape != (n, size) or not (np.sort(perms, axis=1) == np.arange(size)).all():
            raise LieRayError(f"ELE key 'perms' must hold {n} permutations of 0..{size - 1}")
        if block_perm.shape != (n,) or not np.array_equal(np.sort(block_perm), np.arange(n)):
            raise LieRayError(f"ELE key 'block_perm' must be a permutation of 0..{n - 1}")
        return {"perms": perms.astype(np.int64), "block_perm": block_perm.astype(np.int64)}

    def __init__(self, arrays, block_size=4, variant=None, image_size=(32, 32)):
        super().__init__(arrays, block_size, variant, image_size)
        self.cipher = PerBlockCipher(
            self.arrays["perms"],
            self.arrays["block_perm"],
            self.block_size,
            self.image_size,
            self.fingerprint,
        )

    @property
    def key_space_log2(self) -> float:
        n = len(self.arrays["block_perm"])
        return n * log2_factorial(nibble_count(self.block_size, CHANNELS)) + log2_factorial(n)
