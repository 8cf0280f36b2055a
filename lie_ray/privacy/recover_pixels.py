"""Key recovery for PE: a key per pixel, so every pixel is its own "block" of three values.

Output channel c of a pixel is input channel T[colour][c], negated (255 - v) where the input
channel's ``inv`` is 0. Per pixel a (3 x 3) table of candidates "output c reads input j", plain
or negated, is ANDed over the observed images; a grey pixel (equal channels) leaves several, so
natural images need a few pairs where one crafted probe (three distinct values) settles all.
"""

from __future__ import annotations

import numpy as np

from lie_ray.transforms.pe import COLOUR_TABLE


class PixelCandidates:
    def __init__(self, block_size: int = 1, channels: int = 3):
        self.same: np.ndarray | None = None
        self.reversed: np.ndarray | None = None

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        n, h, w, c = plain.shape
        p = plain.reshape(n, h * w, 1, c)
        q = cipher.reshape(n, h * w, c, 1)
        same, flipped = (q == p).all(axis=0), (q == 255 - p).all(axis=0)
        self.same = same if self.same is None else self.same & same
        self.reversed = flipped if self.reversed is None else self.reversed & flipped

    def codes(self) -> np.ndarray:
        """Per pixel, the colour codes whose channel map every observation allows."""
        allowed = self.same | self.reversed  # (pixels, out c, in j)
        rows = np.arange(3)
        return allowed[:, rows[None, :], COLOUR_TABLE].all(axis=2)  # (pixels, 6)

    @property
    def determined(self) -> bool:
        codes = self.codes()
        source = COLOUR_TABLE[codes.argmax(axis=1)]
        rows = np.arange(len(source))[:, None]
        same = self.same[rows, np.arange(3), source]
        flipped = self.reversed[rows, np.arange(3), source]
        return bool((codes.sum(axis=1) == 1).all() and (same ^ flipped).all())

    def arrays(self) -> dict[str, np.ndarray]:
        colour = self.codes().argmax(axis=1)
        source = COLOUR_TABLE[colour]  # (pixels, 3): input channel read by output channel c
        pixels = np.arange(len(source))[:, None]
        negated = (
            self.reversed[pixels, np.arange(3), source] & ~self.same[pixels, np.arange(3), source]
        )
        inv = np.ones((len(source), 3), dtype=np.int64)
        inv[pixels, source] = np.where(negated, 0, 1)  # inv is indexed by INPUT channel
        return {"inv": inv.reshape(-1), "colour": colour.astype(np.int64)}
