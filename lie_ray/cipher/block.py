"""Tanaka's learnable block-wise image encryption (ICCE-TW 2018), exact and vectorised.

One key encrypts every M x M block the same way (PAPER.md): each byte splits into two nibbles,
a key-chosen subset of nibble positions is reversed, the nibbles are shuffled, the subset is
reversed again, and the nibbles are re-joined into bytes. ``BlockCipher`` runs that as
precomputed whole-image gathers (``tables.py``), so a batch costs a handful of passes over its
bytes whatever M is.

This module needs only NumPy: torch tensors are handed to ``torch_path.py``, imported on first
use. Ray Data's encryption actors therefore start without importing torch (2 s instead of 6.5 s
on our machines, paid by every actor pool, every epoch).
"""
from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.cipher.tables import GatherTables, Layout, build_tables

if TYPE_CHECKING:
    import torch

Direction = Literal["encrypt", "decrypt"]
ArrayLike = TypeVar("ArrayLike", np.ndarray, "torch.Tensor")

FINGERPRINT_PREFIX = b"lie_ray/permutation-fingerprint/v1\0"


def nibble_count(block_size: int, channels: int = 3) -> int:
    """Length 2*M*M*C of a key for blocks of size M with C channels."""
    return 2 * block_size * block_size * channels


def validate_permutation(perm: np.ndarray | list[int], block_size: int, channels: int = 3
                         ) -> np.ndarray:
    """Return ``perm`` as an int64 array, or raise a one-line error saying what is wrong."""
    if block_size < 1:
        raise LieRayError(f"block size must be a positive integer, got {block_size}")
    arr = np.asarray(perm)
    expected = nibble_count(block_size, channels)
    if arr.ndim != 1 or arr.size != expected:
        raise LieRayError(
            f"key has {arr.size} entries but block size {block_size} with {channels} channels "
            f"needs a permutation of 0..{expected - 1} ({expected} entries)")
    if not np.issubdtype(arr.dtype, np.integer):
        raise LieRayError("key must hold integers (a permutation of nibble positions)")
    arr = arr.astype(np.int64)
    if not np.array_equal(np.sort(arr), np.arange(expected)):
        raise LieRayError(f"key is not a permutation of 0..{expected - 1}: "
                          "some positions repeat or are out of range")
    return arr


def permutation_fingerprint(perm: np.ndarray, block_size: int) -> str:
    """A short, non-reversible name for a key: safe to log, store and put in file names."""
    digest = hashlib.sha256(FINGERPRINT_PREFIX + block_size.to_bytes(2, "little")
                            + np.asarray(perm, dtype="<u2").tobytes())
    return digest.hexdigest()[:16]


class BlockCipher:
    """Encrypt and decrypt images with one key permutation, bit-exact with the reference.

    Accepts NumPy uint8 arrays in NHWC (or HWC) and torch tensors in NCHW (or CHW), uint8 or
    float in [0, 1], on any device; returns the same kind, shape, dtype and device.

    Floats are quantised by rounding to the nearest of 256 levels (``quantise.py`` says why the
    reference's flooring is not kept).
    """

    def __init__(self, perm: np.ndarray | list[int], block_size: int, channels: int = 3):
        self.block_size = block_size
        self.channels = channels
        self.perm = validate_permutation(perm, block_size, channels)
        self.inverse_perm = np.argsort(self.perm, kind="stable")
        # PAPER.md step 3: position i is reversed when key[i] > d (strictly, as the reference).
        self.reversed_mask = self.perm > block_size * block_size * channels
        self.fingerprint = permutation_fingerprint(self.perm, block_size)
        self.device_tables: dict[tuple, dict[str, Any]] = {}  # filled by torch_path

    def __repr__(self) -> str:  # never show the permutation itself
        return f"BlockCipher(block_size={self.block_size}, fingerprint={self.fingerprint})"

    # ---------------------------------------------------------------- public API
    def encrypt(self, images: ArrayLike) -> ArrayLike:
        return self._apply(images, "encrypt")

    def decrypt(self, images: ArrayLike) -> ArrayLike:
        return self._apply(images, "decrypt")

    def tables(self, direction: Direction, height: int, width: int, layout: Layout
               ) -> GatherTables:
        """Gather tables for one image size (cached: computing them costs ~1 ms)."""
        self.check_shape(height, width)
        return _cached_tables(self, direction, height, width, layout)

    def check_shape(self, height: int, width: int) -> None:
        m = self.block_size
        if height % m or width % m:
            raise LieRayError(f"block size {m} does not divide the image size {height}x{width}: "
                              f"use a block size that divides both (e.g. 2, 4 or 8 for 32x32)")

    # ---------------------------------------------------------------- dispatch
    def _apply(self, images, direction: Direction):
        if isinstance(images, np.ndarray):
            return self._apply_numpy(images, direction)
        torch = sys.modules.get("torch")  # a tensor exists only if torch is already imported
        if torch is not None and isinstance(images, torch.Tensor):
            from lie_ray.cipher.torch_path import apply_torch

            return apply_torch(self, images, direction)
        raise LieRayError(f"cannot encrypt a {type(images).__name__}: pass a NumPy uint8 array "
                          "(NHWC) or a torch tensor (NCHW)")

    def _apply_numpy(self, images: np.ndarray, direction: Direction) -> np.ndarray:
        if images.dtype != np.uint8:
            raise LieRayError(f"NumPy images must be uint8 NHWC, got dtype {images.dtype}: "
                              "convert with (x * 255).round().astype(np.uint8)")
        batch = as_batch(images, channel_axis=-1, channels=self.channels)
        n, h, w, _ = batch.shape
        tables = self.tables(direction, h, w, "hwc")
        out = gather_bytes_numpy(batch.reshape(n, -1), tables)
        return out.reshape(images.shape)


@lru_cache(maxsize=64)
def _cached_tables(cipher: BlockCipher, direction: Direction, height: int, width: int,
                   layout: Layout) -> GatherTables:
    perm = cipher.perm if direction == "encrypt" else cipher.inverse_perm
    return build_tables(perm, cipher.reversed_mask, height, width, cipher.channels,
                        cipher.block_size, layout)


def from_permutation(perm: np.ndarray | list[int], block_size: int = 4, channels: int = 3
                     ) -> BlockCipher:
    """Import a key in the reference implementation's format: the raw permutation of
    0..2*M*M*C-1, where position i is reversed when perm[i] > M*M*C."""
    return BlockCipher(perm, block_size=block_size, channels=channels)


# -------------------------------------------------------------------- kernels
def gather_bytes_numpy(flat: np.ndarray, t: GatherTables) -> np.ndarray:
    """Apply the tables to a (N, H*W*C) uint8 array: out = (hi | lo) ^ mask."""
    high = np.take(flat, t.hi_src, axis=1)
    np.left_shift(high, t.hi_shift, out=high)
    high &= 0xF0
    low = np.take(flat, t.lo_src, axis=1)
    np.right_shift(low, t.lo_shift, out=low)
    low &= 0x0F
    high |= low
    high ^= t.xor_mask
    return high


def as_batch(images, channel_axis: int, channels: int):
    """Add a batch axis to a single image and check the channel count."""
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[channel_axis] != channels:
        layout = "NHWC (NumPy)" if channel_axis == -1 else "NCHW (torch)"
        raise LieRayError(f"expected images in {layout} with {channels} channels, got shape "
                          f"{tuple(images.shape)}")
    return images
