"""Random crop (zero padding 4) and horizontal flip on PLAIN uint8 NHWC batches.

Applied before encryption, as in the paper: the cipher's blocks must see the augmented image,
not an augmented ciphertext (a shifted ciphertext would break block alignment).
"""

from __future__ import annotations

import numpy as np


def random_crop_flip(images: np.ndarray, rng: np.random.Generator, padding: int = 4) -> np.ndarray:
    """One gather: each pixel (its channels viewed as one element) is picked from the padded
    image by its crop offset and flip. Twice as fast as slicing crop windows and flipping them
    with ``np.where`` (bench/ingest.py), with the same random draws and the same output."""
    n, h, w, c = images.shape
    rows = rng.integers(0, 2 * padding + 1, n)
    cols = rng.integers(0, 2 * padding + 1, n)
    flip = rng.random(n) < 0.5
    padded = np.zeros((n, h + 2 * padding, w + 2 * padding, c), images.dtype)
    padded[:, padding : padding + h, padding : padding + w] = images
    pixels = padded.view(f"V{c * images.itemsize}")[..., 0]  # N, H + 2p, W + 2p
    across = np.arange(w)
    columns = cols[:, None] + np.where(flip[:, None], across[::-1], across)  # N, W
    down = rows[:, None] + np.arange(h)  # N, H
    crops = pixels[np.arange(n)[:, None, None], down[:, :, None], columns[:, None, :]]
    return crops.view(images.dtype).reshape(n, h, w, c)


def augment_batch(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ray Data UDF: fresh randomness every call, so every epoch sees new crops and flips, and
    the block's rows in a new order (blocks hold runs of consecutive ids; the workers' local
    shuffle buffer then mixes rows of a block that is already shuffled)."""
    rng = np.random.default_rng()
    order = rng.permutation(len(batch["image"]))
    out = {name: np.asarray(column)[order] for name, column in batch.items()}
    out["image"] = random_crop_flip(out["image"], rng)
    return out
