"""``privacy_gallery.png``: per transform, the plain images, then each attack's reconstruction.

The reconstructions exist only in the job's memory (the table keeps their scores), so the job
draws the gallery itself, as the evaluation job draws ``gallery.png``; the privacy section
(``lie_ray.report.privacy``) is rebuilt from ``privacy.parquet`` alone and links the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lie_ray.infra.images import save_grid

GALLERY = "privacy_gallery.png"
# The attacks in the order of the gallery's rows and of the privacy table.
ATTACK_ORDER = (
    "ciphertext",
    "fr-basic",
    "block-mean",
    "itn",
    "known-plaintext",
    "chosen-plaintext",
    "brute-force",
    "key-space",
)


def write_gallery(gallery: list, path: Path) -> None:
    """Per transform: plain, then each attack's reconstruction (and the ciphertext) as rows."""
    rows = []
    for _, plain, found in gallery:
        rows.append(plain)
        rows += [to_uint8(found[a]) for a in ATTACK_ORDER if a in found]
    if rows:
        save_grid(rows, path, scale=2)


def to_uint8(images: np.ndarray) -> np.ndarray:
    if images.dtype == np.uint8:
        return images
    return (np.clip(images, 0.0, 1.0) * 255).round().astype(np.uint8)
