"""Known-plaintext key recovery: from k (plain, encrypted) pairs under one key, the key itself.

No learning: each transform's structure says which output value comes from which input value,
so candidates inconsistent with an observed pair are struck out until one key is left.
``recover_positions`` (LE, Shuffle, NP: the same key in every block), ``recover_pixels`` (PE:
a key per pixel), ``recover_blocks`` (EtC: an operation per block and a block shuffle) and
``recover_ele`` (an LE key per block and a block shuffle) and ``recover_ffx`` (FFX's table and
binary key) hold the candidate tables; this module feeds them pairs and judges the result.
"""

from __future__ import annotations

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.privacy import targets
from lie_ray.privacy.chosen_plaintext import noise_probes
from lie_ray.privacy.recover_blocks import EtcCandidates
from lie_ray.privacy.recover_ele import EleCandidates
from lie_ray.privacy.recover_ffx import FfxCandidates
from lie_ray.privacy.recover_pixels import PixelCandidates
from lie_ray.privacy.recover_positions import LeCandidates, NpCandidates, ShuffleCandidates
from lie_ray.transforms import transform_class

# The recovery of every transform whose class says ``known_plaintext`` (a test checks both agree).
RECOVERERS = {
    "le": LeCandidates,
    "shuffle": ShuffleCandidates,
    "np": NpCandidates,
    "pe": PixelCandidates,
    "etc": EtcCandidates,
    "ele": EleCandidates,
    "ffx": FfxCandidates,
}


def recoverable(name: str) -> bool:
    return transform_class(name).known_plaintext


def recoverer(name: str):
    """The candidates class that recovers ``name``'s key: the family's here, an outside
    transform's from its ``recoverer`` attribute (``observe(plain, cipher)``, ``determined``,
    ``arrays()``: see ``recover_positions``)."""
    found = RECOVERERS.get(name) or transform_class(name).recoverer
    if found is None:
        raise LieRayError(
            f"transform {name!r} says known_plaintext but has no recoverer: set "
            "its 'recoverer' class attribute, or known_plaintext = False"
        )
    return found


def smallest_k(
    name: str, plain: np.ndarray, cipher: np.ndarray, block_size: int
) -> tuple[int | None, dict[str, np.ndarray]]:
    """Feed pairs one at a time; the first k at which the key is determined (None if never
    within the pairs given), and the key recovered from the pairs seen by then."""
    candidates = recoverer(name)(targets.block_size_for(name, block_size), plain.shape[-1])
    for k in range(1, len(plain) + 1):  # one pass per image pair: k is the answer sought
        candidates.observe(plain[k - 1 : k], cipher[k - 1 : k])
        if candidates.determined:
            return k, candidates.arrays()
    return None, candidates.arrays()


def equivalent(name: str, recovered: dict[str, np.ndarray], truth, probes: int = 2) -> bool:
    """Does the recovered key do what the true one does? Exactly equal arrays, or (where codes
    overlap, as EtC's rotations and flips) the same ciphertexts of random probe images."""
    expected = truth.key_arrays()
    if set(recovered) == set(expected) and all(
        np.array_equal(np.asarray(recovered[k]), np.asarray(expected[k])) for k in expected
    ):
        return True
    images = noise_probes(probes, seed=12345)
    candidate = targets.from_arrays(name, recovered, truth.block_size)
    return bool(np.array_equal(candidate.encrypt(images), truth.encrypt(images)))
