"""PNG grids of images, for eyeballing what the cipher and the attacks did."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image

from lie_ray import atomic


def save_grid(rows: list[np.ndarray], path: str | os.PathLike, scale: int = 4,
              gap: int = 2) -> None:
    """Save uint8 NHWC image rows (same N, H, W each) as one PNG grid, atomically."""
    n, h, w, _ = rows[0].shape
    cell_h, cell_w = h * scale + gap, w * scale + gap
    canvas = np.full((len(rows) * cell_h + gap, n * cell_w + gap, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        big = images.repeat(scale, axis=1).repeat(scale, axis=2)
        for c in range(n):  # a few dozen tiles, not pixels
            top, left = gap + r * cell_h, gap + c * cell_w
            canvas[top:top + h * scale, left:left + w * scale] = big[c]
    with atomic.staged_file(path) as staging:
        Image.fromarray(canvas).save(staging, format="PNG")
