"""Key recovery for FFX (the ``paper`` variant): a codebook, not the password.

FFX's lookup is a keyed pseudo-random permutation, so the password stays out of reach; but the
encryption is a fixed table, and a table is what known pairs reveal. Every block position ``p``
either keeps a level, ``v -> v / 255``, or (``flip[p]``) looks it up, ``v -> lookup[v] / peak``,
the same lookup at every flipped position. So an output that is not ``v / 255`` proves its
position flipped and gives ``lookup[v] / peak``; a position that output ``v / 255`` for a level
whose looked-up value is known to differ is proved kept. The key is determined when every
position is proved one way or the other and all 256 looked-up values are known. The integer
lookup is then the smallest ``peak`` whose multiples reproduce every ratio exactly: what the
encryption divides by is all it depends on, so that key encrypts as the true one does.
"""

from __future__ import annotations

import numpy as np

from lie_ray.privacy.recover_positions import block_bytes
from lie_ray.transforms.ffx import CODE_SPACE, LOOKUP_SIZE

KEPT = np.arange(LOOKUP_SIZE, dtype=np.float32) / np.float32(255)  # as FFX's table holds them


class FfxCandidates:
    def __init__(self, block_size: int, channels: int = 3):
        self.block_size = block_size
        size = block_size * block_size * channels
        self.flipped = np.zeros(size, dtype=bool)  # proved flipped
        self.kept_levels = np.zeros((size, LOOKUP_SIZE), dtype=bool)  # levels seen kept there
        self.ratio = np.full(LOOKUP_SIZE, np.nan, dtype=np.float32)  # lookup[v] / peak

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        levels = block_bytes(plain, self.block_size)
        values = block_bytes(np.asarray(cipher, dtype=np.float32), self.block_size)
        kept = values == KEPT[levels]
        self.flipped |= (~kept).any(axis=0)
        self.ratio[levels[~kept]] = values[~kept]
        positions = np.broadcast_to(np.arange(levels.shape[1]), levels.shape)
        self.kept_levels[positions[kept], levels[kept]] = True

    def proved_kept(self) -> np.ndarray:
        """Positions that kept a level whose looked-up value would have differed."""
        differs = ~np.isnan(self.ratio) & (self.ratio != KEPT)
        return ~self.flipped & (self.kept_levels & differs[None, :]).any(axis=1)

    @property
    def determined(self) -> bool:
        return bool((self.flipped | self.proved_kept()).all() and not np.isnan(self.ratio).any())

    def arrays(self) -> dict[str, np.ndarray]:
        """The key from what was seen; unseen looked-up values get unused codes (the peak
        first, as the table divides by the lookup's largest value)."""
        known = ~np.isnan(self.ratio)
        peak = smallest_peak(self.ratio[known])
        lookup = np.full(LOOKUP_SIZE, -1, dtype=np.int64)
        lookup[known] = np.rint(self.ratio[known].astype(np.float64) * peak).astype(np.int64)
        used = set(lookup[known].tolist())
        unused = [code for code in range(peak, -1, -1) if code not in used]
        lookup[~known] = unused[: int((~known).sum())]
        return {"flip": self.flipped.copy(), "lookup": lookup}


def smallest_peak(ratios: np.ndarray) -> int:
    """The smallest peak (at least 255: 256 distinct codes fit below it) whose integer codes
    give back every ratio exactly as FFX's float32 table does."""
    for peak in range(LOOKUP_SIZE - 1, CODE_SPACE):
        codes = np.rint(ratios.astype(np.float64) * peak)
        if (
            codes.max(initial=0) <= peak
            and len(np.unique(codes)) == len(codes)
            and np.array_equal(codes.astype(np.float32) / np.float32(peak), ratios)
        ):
            return peak
    return CODE_SPACE - 1  # no exact fit: not FFX's paper variant
