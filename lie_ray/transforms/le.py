"""LE: Tanaka's learnable encryption (ICCE-TW 2018), the existing ``lie_ray.cipher`` wrapped.

Key arrays: ``{"perm": permutation of 0..2d-1}`` as the reference (``mastnk/ICCE-TW2018``)
stores it. Nibble operations are piecewise constant: the attack's backward is BPDA
(``lie_ray.cipher.differentiable``).
"""
from __future__ import annotations

import numpy as np

from lie_ray.cipher.block import BlockCipher, nibble_count, validate_permutation
from lie_ray.keys import FIXED_LABEL, Key
from lie_ray.transforms.base import CHANNELS, Transform, log2_factorial


class NibbleTransform(Transform):
    """A transform run by a ``BlockCipher``-like ``self.cipher``: LE's nibble kernels, with
    ``cipher_with_grad``'s backward (BPDA surrogates, or ``none``: plain autograd)."""

    gradient = "bpda"
    adaptation = True
    backwards = ("bpda-both", "bpda-high", "none")

    def encrypt(self, images):
        return self.cipher.encrypt(images)

    def decrypt(self, images):
        return self.cipher.decrypt(images)

    def with_grad(self, images, backward=None):
        from lie_ray.cipher.differentiable import cipher_with_grad

        return cipher_with_grad(self.cipher, images, self.backward_mode(backward))


class LE(NibbleTransform):
    name = "le"
    paper_block_sizes = (4,)

    @classmethod
    def from_key(cls, key: Key, label: str, block_size: int, variant, image_size) -> "LE":
        # The Key's own cipher for its fixed label (or an imported permutation); other labels
        # are derived here, so per-image keys do not pile up in the Key's unbounded cache.
        if block_size == key.block_size and (label == FIXED_LABEL or not key.derives_subkeys):
            return cls({"perm": key.cipher(label).perm}, block_size, variant, image_size)
        return super().from_key(key, label, block_size, variant, image_size)

    @classmethod
    def derive(cls, key: Key, label, block_size, image_size) -> dict[str, np.ndarray]:
        # Exactly keys.derive_permutation for this block size: one key family for every M.
        size = nibble_count(block_size, CHANNELS)
        stream = key.stream(f"permutation/{size}/{label}", 8 * size)
        return {"perm": np.argsort(np.frombuffer(stream, dtype="<u8"), kind="stable")}

    def validate(self, arrays):
        self.cipher = BlockCipher(validate_permutation(arrays["perm"], self.block_size),
                                  self.block_size)
        return {"perm": self.cipher.perm}

    def __init__(self, arrays, block_size=4, variant=None, image_size=(32, 32)):
        super().__init__(arrays, block_size, variant, image_size)
        self.fingerprint = self.cipher.fingerprint  # LE's fingerprints predate this package

    @property
    def key_space_log2(self) -> float:
        return log2_factorial(nibble_count(self.block_size, CHANNELS))
