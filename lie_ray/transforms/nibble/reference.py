"""A straightforward vectorised NumPy rendering of the reference algorithm.

Kept as the yardstick for ``bench/cipher.py`` and as a second opinion in tests: it follows
PAPER.md step by step (reshape into blocks, split nibbles, reverse, fancy-index, reverse,
re-join) with no precomputed tables. ``BlockCipher`` must match it bit for bit.
"""

from __future__ import annotations

import numpy as np


def reference_encrypt(images: np.ndarray, perm: np.ndarray, block_size: int) -> np.ndarray:
    """Encrypt uint8 NHWC images with key ``perm``."""
    d = block_size * block_size * images.shape[-1]
    return reference_apply(images, np.asarray(perm), np.asarray(perm) > d, block_size)


def reference_decrypt(images: np.ndarray, perm: np.ndarray, block_size: int) -> np.ndarray:
    """Decrypt: the same procedure with the inverse permutation and the SAME reversal set."""
    d = block_size * block_size * images.shape[-1]
    perm = np.asarray(perm)
    return reference_apply(images, np.argsort(perm), perm > d, block_size)


def reference_apply(
    images: np.ndarray, perm: np.ndarray, reversed_mask: np.ndarray, block_size: int
) -> np.ndarray:
    n, h, w, c = images.shape
    m = block_size
    d = m * m * c
    blocks = (
        images.reshape(n, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, d)
    )
    nibbles = np.concatenate([blocks & 0x0F, blocks >> 4], axis=-1)
    nibbles = np.where(reversed_mask, 15 - nibbles, nibbles)
    nibbles = nibbles[..., perm]
    nibbles = np.where(reversed_mask, 15 - nibbles, nibbles)
    joined = (16 * nibbles[..., d:] + nibbles[..., :d]).astype(np.uint8)
    return (
        joined.reshape(n, h // m, w // m, m, m, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, h, w, c)
    )
