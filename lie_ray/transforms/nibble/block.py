"""Tanaka's learnable block-wise image encryption (ICCE-TW 2018), exact and vectorised.

One key encrypts every M x M block the same way (PAPER.md): each byte splits into two nibbles,
a key-chosen subset of nibble positions is reversed, the nibbles are shuffled, the subset is
reversed again, and the nibbles are re-joined into bytes. ``BlockCipher`` runs that as
precomputed whole-image gathers (``tables.py``), so a batch costs a handful of passes over its
bytes whatever M is.

This module needs only NumPy: torch tensors are handed to ``kernels_torch.py``, imported on first
use. Ray Data's encryption actors therefore start without importing torch (2 s instead of 6.5 s
on our machines, paid by every actor pool, every epoch).
"""

from __future__ import annotations

import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.permutation import nibble_count, permutation_fingerprint, validate_permutation
from lie_ray.transforms.nibble.kernels_numpy import Direction, as_batch, gather_bytes_numpy
from lie_ray.transforms.nibble.tables import GatherTables, Layout, build_tables

if TYPE_CHECKING:
    import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, "torch.Tensor")
__all__ = [
    "NibbleCipher",
    "BlockCipher",
    "from_permutation",
    "nibble_count",
    "validate_permutation",
    "Direction",
]


class NibbleCipher:
    """What runs LE's nibble kernels: whole-image gather tables (``tables``), applied to NumPy
    uint8 NHWC arrays or torch NCHW tensors (uint8, or float in [0, 1] quantised by rounding as
    ``quantise.py`` says), on any device, returning the same kind, shape, dtype and device.

    Subclasses say only how the tables are made: ``BlockCipher`` from one key permutation for
    every block (LE), ``transforms.ele.PerBlockCipher`` from a key per block plus a block
    shuffle (ELE). The BPDA backward (``bpda.cipher_with_grad``) reads the same tables.
    """

    block_size: int
    channels: int
    fingerprint: str

    def __init__(self, block_size: int, channels: int, fingerprint: str):
        self.block_size, self.channels, self.fingerprint = block_size, channels, fingerprint
        self.device_tables: dict[tuple, dict[str, Any]] = {}  # filled by kernels_torch

    def __repr__(self) -> str:  # never show the key itself
        return (
            f"{type(self).__name__}(block_size={self.block_size}, fingerprint={self.fingerprint})"
        )

    def tables(self, direction: Direction, height: int, width: int, layout: Layout) -> GatherTables:
        raise NotImplementedError

    # ---------------------------------------------------------------- public API
    def encrypt(self, images: ArrayLike) -> ArrayLike:
        return self._apply(images, "encrypt")

    def decrypt(self, images: ArrayLike) -> ArrayLike:
        return self._apply(images, "decrypt")

    # ---------------------------------------------------------------- dispatch
    def _apply(self, images, direction: Direction):
        if isinstance(images, np.ndarray):
            return self._apply_numpy(images, direction)
        torch = sys.modules.get("torch")  # a tensor exists only if torch is already imported
        if torch is not None and isinstance(images, torch.Tensor):
            from lie_ray.transforms.nibble.kernels_torch import apply_torch

            return apply_torch(self, images, direction)
        raise LieRayError(
            f"cannot encrypt a {type(images).__name__}: pass a NumPy uint8 array "
            "(NHWC) or a torch tensor (NCHW)"
        )

    def _apply_numpy(self, images: np.ndarray, direction: Direction) -> np.ndarray:
        if images.dtype != np.uint8:
            raise LieRayError(
                f"NumPy images must be uint8 NHWC, got dtype {images.dtype}: "
                "convert with (x * 255).round().astype(np.uint8)"
            )
        batch = as_batch(images, channel_axis=-1, channels=self.channels)
        n, h, w, _ = batch.shape
        tables = self.tables(direction, h, w, "hwc")
        out = gather_bytes_numpy(batch.reshape(n, -1), tables)
        return out.reshape(images.shape)


class BlockCipher(NibbleCipher):
    """Tanaka's cipher with one key permutation for every block, bit-exact with the reference,
    on images of any size that the block size divides."""

    def __init__(self, perm: np.ndarray | list[int], block_size: int, channels: int = 3):
        self.perm = validate_permutation(perm, block_size, channels)
        super().__init__(block_size, channels, permutation_fingerprint(self.perm, block_size))
        self.inverse_perm = np.argsort(self.perm, kind="stable")
        # PAPER.md step 3: position i is reversed when key[i] > d (strictly, as the reference).
        self.reversed_mask = self.perm > block_size * block_size * channels

    def tables(self, direction: Direction, height: int, width: int, layout: Layout) -> GatherTables:
        """Gather tables for one image size (cached: computing them costs ~1 ms)."""
        self.check_shape(height, width)
        return _cached_tables(self, direction, height, width, layout)

    def check_shape(self, height: int, width: int) -> None:
        m = self.block_size
        if height % m or width % m:
            raise LieRayError(
                f"block size {m} does not divide the image size {height}x{width}: "
                f"use a block size that divides both (e.g. 2, 4 or 8 for 32x32)"
            )


@lru_cache(maxsize=64)
def _cached_tables(
    cipher: BlockCipher, direction: Direction, height: int, width: int, layout: Layout
) -> GatherTables:
    perm = cipher.perm if direction == "encrypt" else cipher.inverse_perm
    return build_tables(
        perm, cipher.reversed_mask, height, width, cipher.channels, cipher.block_size, layout
    )


def from_permutation(
    perm: np.ndarray | list[int], block_size: int = 4, channels: int = 3
) -> BlockCipher:
    """Import a key in the reference implementation's format: the raw permutation of
    0..2*M*M*C-1, where position i is reversed when perm[i] > M*M*C."""
    return BlockCipher(perm, block_size=block_size, channels=channels)
