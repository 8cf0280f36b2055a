"""Ciphertext-only reconstruction, no learning: what the encrypted image itself gives away.

FR-basic (the feature-reconstruction attack's basic step) folds every value onto its lower half,
v -> min(v, 255 - v), so a negative-positive flip (255 - v) no longer matters: for PE and EtC
the folded ciphertext shows the folded plain image's edges; for nibble and block shuffles it
removes nothing. Block-mean applies where a transform keeps every value inside its own block
(Shuffle): each block's mean survives encryption, so a grey image of block means is the
plain image at 1/M resolution. Scored against the true plain image like every other
reconstruction.
"""

from __future__ import annotations

import numpy as np


def fr_basic(encrypted: np.ndarray) -> np.ndarray:
    """Fold each value: uint8 v -> min(v, 255 - v); floats in [0, 1] v -> min(v, 1 - v).

    The folded image lies in the lower half of the range; it is stretched back to the full
    range (x2) so it is compared with the plain image on the same scale.
    """
    if encrypted.dtype == np.uint8:
        folded = np.minimum(encrypted, 255 - encrypted).astype(np.uint16) * 2
        return np.minimum(folded, 255).astype(np.uint8)
    values = np.clip(encrypted.astype(np.float32), 0.0, 1.0)
    return np.minimum(values, 1.0 - values) * 2.0


def block_mean(encrypted: np.ndarray, block_size: int) -> np.ndarray:
    """Each M x M block replaced by the mean of all its values (every channel): uint8 NHWC."""
    n, h, w, c = encrypted.shape
    m = block_size
    means = encrypted.reshape(n, h // m, m, w // m, m, c).astype(np.float32).mean(axis=(2, 4, 5))
    grey = np.repeat(np.repeat(means, m, axis=1), m, axis=2)
    return np.repeat(grey[..., None], c, axis=3).round().astype(np.uint8)
