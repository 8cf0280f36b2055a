"""Brute force where the key space is small: NP and FFX at M = 2 with the reference's keys.

The reference draws the binary key as ``randperm(d) > d / 2``: always d/2 - 1 ones, so at M = 2
(d = 12) there are only C(12, 5) = 792 keys. One known pair suffices: try them all, keep those
that encrypt the plain image to the observed ciphertext.

FFX's lookup comes from a password. The attacker gets only what is public: the password the
reference fixes in its code (``"password"``), which it tries with every binary key. A defender
who used that password falls in 792 trials; lie_ray's FFX derives a 128-bit password from the
master key, which no trial here can reach (the key space counts it: ``FFX.key_space_log2``),
so the search finds nothing. The attack is never handed the defender's own lookup.
"""

from __future__ import annotations

import itertools
import time

import numpy as np

from lie_ray.privacy import targets

BLOCK_SIZE = 2


def reference_binary_keys(block_size: int = BLOCK_SIZE, channels: int = 3) -> np.ndarray:
    """Every key ``randperm(d) > d / 2`` can produce: (C(d, ones), d) booleans."""
    d = block_size * block_size * channels
    ones = int(np.sum(np.arange(d) > d / 2))
    chosen = np.array(list(itertools.combinations(range(d), ones)))
    keys = np.zeros((len(chosen), d), dtype=bool)
    keys[np.arange(len(chosen))[:, None], chosen] = True
    return keys


def public_guesses(name: str) -> list[dict[str, np.ndarray]]:
    """What an attacker knows of a key beyond its binary part: FFX's published lookup."""
    if name == "ffx":
        from lie_ray.transforms.ffx import published_lookup

        return [{"lookup": published_lookup()}]
    return [{}]


def brute_force(
    name: str, block_size: int, plain: np.ndarray, observed: np.ndarray
) -> tuple[list[dict[str, np.ndarray]], int, float]:
    """Every reference key consistent with one known pair (``plain`` -> ``observed``, all the
    attacker holds); keys tried; keys per second."""
    candidates = reference_binary_keys(block_size)
    started = time.perf_counter()
    found, tried = [], 0
    for public in public_guesses(name):
        for flip in candidates:  # the attack IS one trial per key
            arrays = {"flip": flip, **public}
            tried += 1
            if np.array_equal(
                targets.from_arrays(name, arrays, block_size).encrypt(plain), observed
            ):
                found.append(arrays)
    return found, tried, tried / (time.perf_counter() - started)
