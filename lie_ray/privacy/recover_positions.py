"""Key recovery for transforms that treat every block the same way: LE, Shuffle, NP.

Each output position of a block reads one input position of the same block, possibly reversed
(LE: nibbles, v -> 15 - v; Shuffle: bytes, never reversed; NP: bytes, each position reads
itself, v -> 255 - v). A candidate "output i reads input j (reversed or not)" survives only
while it holds in EVERY observed block, so each new block can only remove candidates: two
(positions x positions) boolean tables, ANDed over the blocks of each new image pair. When one
candidate is left per output position the key is known.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

CHUNK_BLOCKS = 512  # blocks per vectorised comparison: 512 x 96 x 96 bools = 4.7 MB


def block_bytes(images: np.ndarray, m: int) -> np.ndarray:
    """uint8 NHWC images -> (n_blocks_total, M*M*C) in (row, col, channel) order."""
    n, h, w, c = images.shape
    return (
        images.reshape(n, h // m, m, w // m, m, c)
        .transpose(0, 1, 3, 2, 4, 5)
        .reshape(-1, m * m * c)
    )


def le_nibbles(images: np.ndarray, m: int) -> np.ndarray:
    """(n_blocks_total, 2d) nibbles, low nibbles first (PAPER.md order)."""
    blocks = block_bytes(images, m)
    return np.concatenate([blocks & 0x0F, blocks >> 4], axis=-1)


class PositionCandidates:
    """Which input position each output position may read, and whether reversed."""

    symbols = staticmethod(block_bytes)
    reverse_max: int | None = None  # v -> reverse_max - v; None: no reversal
    diagonal = False  # each position reads itself (NP)

    def __init__(self, block_size: int, channels: int = 3):
        self.block_size = block_size
        size = len(
            self.symbols(np.zeros((1, block_size, block_size, channels), np.uint8), block_size)[0]
        )
        start = np.eye(size, dtype=bool) if self.diagonal else np.ones((size, size), bool)
        self.same = start.copy()
        self.reversed = start.copy() if self.reverse_max is not None else np.zeros_like(start)

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        p = self.symbols(plain, self.block_size)
        c = self.symbols(cipher, self.block_size)
        for start in range(0, len(p), CHUNK_BLOCKS):  # chunks bound memory; not a pixel loop
            pc, cc = (
                p[start : start + CHUNK_BLOCKS, None, :],
                c[start : start + CHUNK_BLOCKS, :, None],
            )
            self.same &= (cc == pc).all(axis=0)
            if self.reverse_max is not None:
                self.reversed &= (cc == self.reverse_max - pc).all(axis=0)

    def settled(self) -> np.ndarray:
        """Allowed (i, j) after removing inputs already taken by a determined output."""
        table = self.same | self.reversed
        while True:
            single = table.sum(axis=1) == 1
            taken = table[single].any(axis=0)
            pruned = table & ~(taken[None, :] & ~single[:, None])
            if np.array_equal(pruned, table):
                return table
            table = pruned

    @property
    def determined(self) -> bool:
        table = self.settled()
        return bool((table.sum(axis=1) == 1).all() and not (self.same & self.reversed).any())

    def source(self) -> np.ndarray:
        """A source position per output position: a maximum matching of the candidates."""
        rows, cols = linear_sum_assignment(-self.settled().astype(np.int64))
        perm = np.empty(len(rows), dtype=np.int64)
        perm[rows] = cols
        return perm


class LeCandidates(PositionCandidates):
    symbols = staticmethod(le_nibbles)
    reverse_max = 15

    def arrays(self) -> dict[str, np.ndarray]:
        # perm[i] = j: its reversal set (perm > d) follows from it.
        return {"perm": self.source()}


class ShuffleCandidates(PositionCandidates):
    def arrays(self) -> dict[str, np.ndarray]:
        return {"perm": self.source()}


class NpCandidates(PositionCandidates):
    reverse_max = 255
    diagonal = True

    def arrays(self) -> dict[str, np.ndarray]:
        return {"flip": np.diag(self.reversed & ~self.same).copy()}
