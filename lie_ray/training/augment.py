"""Random crop (zero padding 4) and horizontal flip on PLAIN uint8 NHWC batches.

Applied before encryption, as in the paper: the cipher's blocks must see the augmented image,
not an augmented ciphertext (a shifted ciphertext would break block alignment).
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int = 4
                     ) -> np.ndarray:
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    windows = sliding_window_view(padded, (h, w), axis=(1, 2))  # N, 2p+1, 2p+1, C, H, W
    rows = rng.integers(0, 2 * padding + 1, n)
    cols = rng.integers(0, 2 * padding + 1, n)
    crops = windows[np.arange(n), rows, cols].transpose(0, 2, 3, 1)  # N, H, W, C
    flip = rng.random(n) < 0.5
    return np.ascontiguousarray(np.where(flip[:, None, None, None], crops[:, :, ::-1], crops))


def augment_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data UDF: fresh randomness every call, so every epoch sees new crops and flips."""
    out = dict(batch)
    out["image"] = random_crop_flip(np.asarray(batch["image"]), np.random.default_rng())
    return out
