"""PNG grids of images, for eyeballing what the cipher and the attacks did."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lie_ray.infra import atomic

CIFAR_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
LABEL_WIDTH, CAPTION_HEIGHT = 150, 26


def save_grid(
    rows: list[np.ndarray],
    path: str | os.PathLike,
    scale: int = 4,
    gap: int = 2,
    row_labels: list[str] | None = None,
    captions: list[list[str]] | None = None,
) -> None:
    """Save uint8 NHWC image rows (same N, H, W each) as one PNG grid, atomically.

    ``row_labels`` names each row at its left; ``captions`` (one string per image, lines split
    by newlines) are written under each image."""
    n, h, w, _ = rows[0].shape
    left = LABEL_WIDTH if row_labels else 0
    below = CAPTION_HEIGHT if captions else 0
    cell_h, cell_w = h * scale + below + gap, w * scale + gap
    canvas = np.full((len(rows) * cell_h + gap, left + n * cell_w + gap, 3), 255, dtype=np.uint8)
    for r, images in enumerate(rows):
        big = images.repeat(scale, axis=1).repeat(scale, axis=2)
        for c in range(n):  # a few dozen tiles, not pixels
            top, x = gap + r * cell_h, left + gap + c * cell_w
            canvas[top : top + h * scale, x : x + w * scale] = big[c]
    picture = Image.fromarray(canvas)
    if row_labels or captions:
        draw, font = ImageDraw.Draw(picture), ImageFont.load_default()
        for r in range(len(rows)):
            top = gap + r * cell_h
            if row_labels:
                draw.multiline_text(
                    (4, top + h * scale // 2 - 6), row_labels[r], fill=(0, 0, 0), font=font
                )
            for c, caption in enumerate(captions[r] if captions else []):
                draw.multiline_text(
                    (left + gap + c * cell_w, top + h * scale + 1),
                    caption,
                    fill=(0, 0, 0),
                    font=font,
                    spacing=1,
                )
    with atomic.staged_file(path) as staging:
        picture.save(staging, format="PNG")
