"""Chosen-plaintext key recovery: the attacker encrypts probes of their own choosing.

The crafted probe is uniform noise: every position of every block then carries an independent
value, so two positions can agree by chance in all of an image's blocks only with probability
about 16**-64 (LE, M = 4, nibbles). One probe therefore pins down a key whose structure repeats
over blocks (LE, Shuffle, NP) or shuffles distinct blocks (EtC), where natural images (smooth,
saturated, correlated channels) may need several. PE's key is per pixel, so noise would leave
the odd pixel with two equal channels: its probe is one flat colour of three distinct values.
The probes are fed to the transform's known-plaintext recovery one at a time and counted.
"""

from __future__ import annotations

import numpy as np

from lie_ray.transforms import transform_class

IMAGE_SHAPE = (32, 32, 3)


# PE's key acts per pixel: one flat colour whose three values are distinct, and distinct from
# each other's negatives (255 - v), tells every pixel's channel map and negations at once.
PIXEL_PROBE = np.array([10, 100, 200], dtype=np.uint8)


def crafted_probes(
    name: str, count: int, seed: int, shape: tuple[int, int, int] = IMAGE_SHAPE
) -> np.ndarray:
    """The probes offered for transform ``name``: a flat colour first where one reveals the
    key (PE), else noise."""
    probes = noise_probes(count, seed, shape)
    if transform_class(name).flat_colour_probe:
        probes[0] = PIXEL_PROBE
    return probes


def noise_probes(count: int, seed: int, shape: tuple[int, int, int] = IMAGE_SHAPE) -> np.ndarray:
    """``count`` uint8 NHWC images of independent uniform bytes."""
    return np.random.default_rng(seed).integers(0, 256, size=(count, *shape), dtype=np.uint8)
