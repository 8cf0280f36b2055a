"""A literal, loop-by-loop rendering of PAPER.md's cipher, independent of lie_ray's code.

Slow on purpose: every block, every nibble, one at a time, exactly as the paper's steps read.
Tests compare lie_ray's vectorised cipher against vectors this module computes.
"""

from __future__ import annotations

import numpy as np


def literal_encrypt_image(image: np.ndarray, key: list[int], m: int) -> np.ndarray:
    """Encrypt one HWC uint8 image with key ``key`` (a permutation of 0..2d-1)."""
    return _literal(image, key, [k > m * m * image.shape[2] for k in key], m)


def literal_decrypt_image(image: np.ndarray, key: list[int], m: int) -> np.ndarray:
    inverse = [0] * len(key)
    for i, k in enumerate(key):
        inverse[k] = i
    return _literal(image, inverse, [k > m * m * image.shape[2] for k in key], m)


def _literal(image, perm, reversed_flags, m):
    h, w, c = image.shape
    d = m * m * c
    out = np.zeros_like(image)
    for block_row in range(h // m):
        for block_col in range(w // m):
            elements = []
            for row in range(m):
                for col in range(m):
                    for ch in range(c):
                        elements.append(int(image[block_row * m + row, block_col * m + col, ch]))
            y = [e & 15 for e in elements] + [e >> 4 for e in elements]
            y = [15 - v if reversed_flags[i] else v for i, v in enumerate(y)]
            z = [y[perm[i]] for i in range(2 * d)]
            z = [15 - v if reversed_flags[i] else v for i, v in enumerate(z)]
            for e in range(d):
                row, rest = divmod(e, m * c)
                col, ch = divmod(rest, c)
                out[block_row * m + row, block_col * m + col, ch] = 16 * z[d + e] + z[e]
    return out
