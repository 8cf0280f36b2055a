"""Key-space audit: how many keys a transform's reference generates, and how long trying them
all would take here.

The rate is measured, not assumed: keys per second a known-plaintext brute force achieves on
this machine (build the transform for a candidate key, encrypt one known plain image, compare
with its ciphertext). The expected brute-force time is half the key space at that rate.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

SECONDS_PER_YEAR = 365.25 * 24 * 3600


def keys_per_second(try_key: Callable[[int], object], budget_s: float, min_keys: int = 20) -> float:
    """Call ``try_key(i)`` for i = 0, 1, ... until ``budget_s`` passed (at least ``min_keys``
    times); return the rate."""
    started = time.perf_counter()
    tried = 0
    while tried < min_keys or time.perf_counter() - started < budget_s:
        try_key(tried)
        tried += 1
    return tried / (time.perf_counter() - started)


def brute_force_log10_years(key_space_log2: float, rate: float) -> float:
    """log10 of the expected years (half the key space) at ``rate`` keys per second."""
    return (key_space_log2 - 1) * math.log10(2) - math.log10(rate * SECONDS_PER_YEAR)


def matches(candidate_cipher: np.ndarray, observed: np.ndarray) -> bool:
    """A candidate key survives when it encrypts the known plain image to the observed one."""
    return bool(np.array_equal(candidate_cipher, observed))
