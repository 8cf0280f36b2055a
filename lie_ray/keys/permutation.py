"""The imported-permutation key: Tanaka's key in the reference implementation's format.

A permutation of the 2*M*M*C nibble positions of one block (``mastnk/ICCE-TW2018``). It lives
here, not with LE's kernels, because a key file may hold one (``lie-ray key-info`` and
``load_key`` check it) and keys sit below the transforms that use them.
"""

from __future__ import annotations

import hashlib

import numpy as np

from lie_ray.errors import LieRayError

FINGERPRINT_PREFIX = b"lie_ray/permutation-fingerprint/v1\0"


def nibble_count(block_size: int, channels: int = 3) -> int:
    """Length 2*M*M*C of a key for blocks of size M with C channels."""
    return 2 * block_size * block_size * channels


def validate_permutation(
    perm: np.ndarray | list[int], block_size: int, channels: int = 3
) -> np.ndarray:
    """Return ``perm`` as an int64 array, or raise a one-line error saying what is wrong."""
    if block_size < 1:
        raise LieRayError(f"block size must be a positive integer, got {block_size}")
    arr = np.asarray(perm)
    expected = nibble_count(block_size, channels)
    if arr.ndim != 1 or arr.size != expected:
        raise LieRayError(
            f"key has {arr.size} entries but block size {block_size} with {channels} channels "
            f"needs a permutation of 0..{expected - 1} ({expected} entries)"
        )
    if not np.issubdtype(arr.dtype, np.integer):
        raise LieRayError("key must hold integers (a permutation of nibble positions)")
    arr = arr.astype(np.int64)
    if not np.array_equal(np.sort(arr), np.arange(expected)):
        raise LieRayError(
            f"key is not a permutation of 0..{expected - 1}: "
            "some positions repeat or are out of range"
        )
    return arr


def permutation_fingerprint(perm: np.ndarray, block_size: int) -> str:
    """A short, non-reversible name for a key: safe to log, store and put in file names."""
    digest = hashlib.sha256(
        FINGERPRINT_PREFIX
        + block_size.to_bytes(2, "little")
        + np.asarray(perm, dtype="<u2").tobytes()
    )
    return digest.hexdigest()[:16]
