"""PE: pixel-based encryption (Sirichotedumrong et al., ICIP 2019; ``MADONOKOUKI/SIA-GAN``).

Key arrays: ``inv`` (H*W*3 values, 0 = negative-positive, 1 = keep, in (row, col, channel)
order) and ``colour`` (H*W codes 0..5): output channel c of a pixel is input channel
T[colour][c], T = (012), (021), (102), (120), (201), (210). Both steps are affine on floats:
the attack gets the TRUE gradient. Random PE (a fresh key per image) is this transform under
the ``per-image`` key policy.
"""

from __future__ import annotations

import math

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_choices, subkey_info
from lie_ray.transforms.base import CHANNELS, GatherTransform

COLOUR_TABLE = np.array([[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]])


def colour_shuffle(table: np.ndarray, codes: np.ndarray):
    """Output channel c of each pixel (or block element) = input channel table[code][c]."""

    def step(image):
        h, w, c = image.shape
        index = table[codes].reshape(h, w, c)
        return np.take_along_axis(image, index, axis=2)

    return step


class PE(GatherTransform):
    name = "pe"
    label = "PE"
    key_fields = ("inv", "colour")
    pixelwise = True
    flat_colour_probe = True
    sia_gan_lpips = 0.1719
    gradient = "true"
    adaptation = False  # PE was designed for unmodified networks
    paper_block_sizes = (1,)

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        h, w = image_size
        info = subkey_info(cls.name, label, block_size, image_size)
        return {
            "inv": derive_choices(key, f"{info}/inv", h * w * CHANNELS, 2),
            "colour": derive_choices(key, f"{info}/colour", h * w, 6),
        }

    def validate(self, arrays):
        h, w = self.image_size
        if self.block_size != 1:
            raise LieRayError(
                f"PE works on single pixels: pass block size 1, not {self.block_size}"
            )
        inv, colour = np.asarray(arrays["inv"]), np.asarray(arrays["colour"])
        if inv.shape != (h * w * CHANNELS,) or not np.isin(inv, (0, 1)).all():
            raise LieRayError(f"PE key 'inv' must hold {h * w * CHANNELS} values in {{0, 1}}")
        if colour.shape != (h * w,) or not np.isin(colour, range(6)).all():
            raise LieRayError(f"PE key 'colour' must hold {h * w} codes in 0..5")
        return {"inv": inv.astype(np.int64), "colour": colour.astype(np.int64)}

    @property
    def key_space_log2(self) -> float:
        h, w = self.image_size
        return 3 * h * w + h * w * math.log2(6)

    def plan(self, plan):
        h, w = self.image_size
        plan.negate(self.arrays["inv"].reshape(h, w, CHANNELS) == 0)
        return plan.move(colour_shuffle(COLOUR_TABLE, self.arrays["colour"]))
