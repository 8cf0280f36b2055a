"""Chosen-plaintext key recovery: the attacker encrypts probes of their own choosing.

The crafted probe is uniform noise: every position of every block then carries an independent
value, so two positions can agree by chance in all of an image's blocks only with probability
about 16**-64 (LE, M = 4, nibbles). One probe therefore pins down a key whose structure repeats
over blocks (LE, Shuffle, NP) or is per pixel (PE), where natural images (smooth, saturated,
correlated channels) may need several. The probes are fed to the transform's known-plaintext
recovery one at a time and counted.
"""
from __future__ import annotations

import numpy as np

IMAGE_SHAPE = (32, 32, 3)


def noise_probes(count: int, seed: int, shape: tuple[int, int, int] = IMAGE_SHAPE
                 ) -> np.ndarray:
    """``count`` uint8 NHWC images of independent uniform bytes."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)
