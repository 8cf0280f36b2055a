"""Key recovery for ELE: an LE key per block, then a block shuffle.

Output block i is LE under key ``perms[j]`` of input block j = ``block_perm[i]``. Each block is
now seen once per image, not 64 times, so the candidates "nibble a of output block i reads
nibble b of input block j (reversed or not)" live in a (blocks, blocks, 2d, 2d) table ANDed
over the observed pairs: a block pair stays possible while every output nibble keeps a source.
Natural images settle it slowly (their nibbles repeat); a handful of noise probes settle it.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from lie_ray.privacy.recover_positions import le_nibbles


def settle(table: np.ndarray) -> np.ndarray:
    """Per block, drop inputs already taken by a determined output (as LE's ``settled``)."""
    while True:
        single = table.sum(axis=2) == 1  # (blocks, out)
        taken = (table & single[:, :, None]).any(axis=1)  # (blocks, in)
        pruned = table & ~(taken[:, None, :] & ~single[:, :, None])
        if np.array_equal(pruned, table):
            return table
        table = pruned


class EleCandidates:
    def __init__(self, block_size: int, channels: int = 3, image_size=(32, 32)):
        self.block_size = block_size
        n = (image_size[0] // block_size) * (image_size[1] // block_size)
        size = 2 * block_size * block_size * channels
        self.same = np.ones((n, n, size, size), dtype=bool)  # out block, in block, out, in
        self.reversed = np.ones_like(self.same)

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        n = len(self.same)
        p = le_nibbles(plain, self.block_size).reshape(len(plain), n, -1)
        c = le_nibbles(cipher, self.block_size).reshape(len(plain), n, -1)
        for image in range(len(plain)):  # one pair at a time bounds memory (38 MB each)
            out, source = c[image][:, None, :, None], p[image][None, :, None, :]
            self.same &= out == source
            self.reversed &= out == 15 - source

    def pairs(self) -> np.ndarray:
        """(out block, in block) pairs in which every output nibble still has a source."""
        return (self.same | self.reversed).any(axis=3).all(axis=2)

    def sources(self) -> np.ndarray:
        rows, cols = linear_sum_assignment(-self.pairs().astype(np.int64))
        return cols[np.argsort(rows)]

    @property
    def determined(self) -> bool:
        pairs = self.pairs()
        if not (pairs.sum(axis=1) == 1).all():
            return False
        src = pairs.argmax(axis=1)
        blocks = np.arange(len(src))
        table = settle(self.same[blocks, src] | self.reversed[blocks, src])
        both = self.same[blocks, src] & self.reversed[blocks, src]
        return bool((table.sum(axis=2) == 1).all() and not both.any())

    def arrays(self) -> dict[str, np.ndarray]:
        src = self.sources()
        blocks = np.arange(len(src))
        table = settle(self.same[blocks, src] | self.reversed[blocks, src])
        perms = np.empty(table.shape[:2], dtype=np.int64)
        for i, j in enumerate(src):  # a permutation per block: 64 small assignment problems
            rows, cols = linear_sum_assignment(-table[i].astype(np.int64))
            perms[j][rows] = cols  # the LE key belongs to the input block
        return {"perms": perms, "block_perm": src.astype(np.int64)}
