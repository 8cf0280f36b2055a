"""LE's nibble gather on NumPy bytes: two gathers and five byte-wise ops per batch.

NumPy only, so Ray Data's encryption actors never import torch (2 s instead of 6.5 s of start-up
on our machines, paid by every actor pool).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.transforms.nibble.tables import GatherTables

Direction = Literal["encrypt", "decrypt"]


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
        raise LieRayError(
            f"expected images in {layout} with {channels} channels, got shape {tuple(images.shape)}"
        )
    return images
