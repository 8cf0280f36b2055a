"""Brute force where the key space is small: NP and FFX at M = 2 with the reference's keys.

The reference draws the binary key as ``randperm(d) > d / 2``: always d/2 - 1 ones, so at M = 2
(d = 12) there are only C(12, 5) = 792 keys. One known pair suffices: try them all, keep those
that encrypt the plain image to the observed ciphertext. FFX's lookup table comes from a
password that the reference fixes in its code (``"password"``), so the attacker is given the
lookup and searches the binary key, as the reference's key space counts it.
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


def brute_force(name: str, defender, plain: np.ndarray, observed: np.ndarray
                ) -> tuple[list[dict[str, np.ndarray]], int, float]:
    """Every reference key consistent with one known pair; keys tried; keys per second."""
    public = {k: v for k, v in defender.key_arrays().items() if k != "flip"}  # FFX's lookup
    candidates = reference_binary_keys(defender.block_size)
    started = time.perf_counter()
    found = []
    for flip in candidates:  # the attack IS one trial per key
        arrays = {"flip": flip, **public}
        if np.array_equal(targets.from_arrays(name, arrays, defender.block_size).encrypt(plain),
                          observed):
            found.append(arrays)
    return found, len(candidates), len(candidates) / (time.perf_counter() - started)
