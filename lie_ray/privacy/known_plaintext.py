"""Known-plaintext key recovery: from k (plain, encrypted) pairs under one key, the key itself.

No learning. For LE every output nibble of a block is some input nibble of the same block,
possibly reversed (v -> 15 - v), the same way in every block of every image. So a candidate
"output position i reads input position j" survives only while ``c[i] == p[j]`` or
``c[i] == 15 - p[j]`` holds in EVERY observed block; each new block can only remove candidates.
A (2d x 2d) boolean table per direction, ANDed over the blocks of each new image, holds them
all; when one candidate is left per output position the reference permutation is known
(``perm[i] = j``: its reversal set ``perm > d`` follows from it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

CHUNK_BLOCKS = 512  # blocks per vectorised comparison: 512 x 96 x 96 bools = 4.7 MB


def le_nibbles(images: np.ndarray, block_size: int) -> np.ndarray:
    """uint8 NHWC images -> (n_blocks_total, 2d) nibbles, low nibbles first (PAPER.md order)."""
    n, h, w, c = images.shape
    m = block_size
    d = m * m * c
    blocks = (images.reshape(n, h // m, m, w // m, m, c).transpose(0, 1, 3, 2, 4, 5)
              .reshape(-1, d))
    return np.concatenate([blocks & 0x0F, blocks >> 4], axis=-1)


@dataclass
class LeCandidates:
    """Which input nibble position each output position may read, given what was observed."""

    table: np.ndarray  # bool (2d, 2d): table[i, j] = output i may read input j

    @classmethod
    def fresh(cls, block_size: int, channels: int = 3) -> "LeCandidates":
        size = 2 * block_size * block_size * channels
        return cls(np.ones((size, size), dtype=bool))

    def observe(self, plain: np.ndarray, cipher: np.ndarray, block_size: int) -> None:
        """Remove every candidate that some block of these image pairs contradicts."""
        p, c = le_nibbles(plain, block_size), le_nibbles(cipher, block_size)
        for start in range(0, len(p), CHUNK_BLOCKS):  # chunks bound the memory, not a pixel loop
            pc, cc = p[start:start + CHUNK_BLOCKS], c[start:start + CHUNK_BLOCKS]
            same = (cc[:, :, None] == pc[:, None, :]).all(axis=0)
            reversed_ = (cc[:, :, None] == 15 - pc[:, None, :]).all(axis=0)
            self.table &= same | reversed_

    def settled(self) -> np.ndarray:
        """Candidates after eliminating columns already taken by a determined row."""
        table = self.table.copy()
        while True:
            single = table.sum(axis=1) == 1
            taken = table[single].any(axis=0)
            pruned = table & ~(taken[None, :] & ~single[:, None])
            if np.array_equal(pruned, table):
                return table
            table = pruned

    @property
    def determined(self) -> bool:
        return bool((self.settled().sum(axis=1) == 1).all())

    def remaining_log2(self) -> float:
        """log2 of an upper bound on the keys still consistent (0 when determined)."""
        counts = self.settled().sum(axis=1)
        return float(np.log2(np.maximum(counts, 1)).sum())

    def best_permutation(self) -> np.ndarray:
        """A permutation consistent with as many observations as possible (exact when
        determined): a maximum matching of the candidate table."""
        rows, cols = linear_sum_assignment(-self.settled().astype(np.int64))
        perm = np.empty(len(rows), dtype=np.int64)
        perm[rows] = cols
        return perm


    def arrays(self) -> dict[str, np.ndarray]:
        """The recovered key in the reference format of ``Target.key_arrays``."""
        return {"perm": self.best_permutation()}


# Transforms whose key this module recovers from plain/encrypted pairs.
RECOVERERS = {"le": LeCandidates}


def recoverable(name: str) -> bool:
    return name in RECOVERERS


def smallest_k(name: str, plain: np.ndarray, cipher: np.ndarray, block_size: int
               ) -> tuple[int | None, dict[str, np.ndarray]]:
    """Feed pairs one at a time; the first k at which the key is determined (None if never
    within the pairs given), and the key recovered from the pairs seen by then."""
    candidates = RECOVERERS[name].fresh(block_size, plain.shape[-1])
    for k in range(1, len(plain) + 1):  # one pass per image pair: k is the answer sought
        candidates.observe(plain[k - 1:k], cipher[k - 1:k], block_size)
        if candidates.determined:
            return k, candidates.arrays()
    return None, candidates.arrays()


def same_key(recovered: dict[str, np.ndarray], truth: dict[str, np.ndarray]) -> bool:
    """Every array of the true key recovered exactly."""
    return set(recovered) == set(truth) and all(
        np.array_equal(np.asarray(recovered[k]), np.asarray(truth[k])) for k in truth)
