"""LE: Tanaka's learnable encryption (ICCE-TW 2018) on the nibble kernels (``transforms.nibble``).

Key arrays: ``{"perm": permutation of 0..2d-1}`` as the reference (``mastnk/ICCE-TW2018``)
stores it. Nibble operations are piecewise constant: the attack's backward is BPDA
(``transforms.nibble.bpda``).
"""

from __future__ import annotations

import numpy as np

from lie_ray.keys import FIXED_LABEL, Key
from lie_ray.keys.derive import le_permutation, log2_factorial
from lie_ray.keys.permutation import nibble_count, validate_permutation
from lie_ray.transforms.base import CHANNELS, Transform
from lie_ray.transforms.nibble.block import BlockCipher, NibbleCipher


class NibbleTransform(Transform):
    """A transform run by LE's nibble kernels: ``self.cipher`` is the ``NibbleCipher`` that
    holds its gather tables, and ``with_grad`` is ``cipher_with_grad``'s backward (BPDA
    surrogates, the identity, or ``none``: plain autograd)."""

    gradient = "bpda"
    adaptation = True
    backwards = ("bpda-both", "bpda-high", "identity", "none")
    cipher: NibbleCipher

    def encrypt(self, images):
        return self.cipher.encrypt(images)

    def decrypt(self, images):
        return self.cipher.decrypt(images)

    def with_grad(self, images, backward=None):
        from lie_ray.transforms.nibble.bpda import cipher_with_grad

        return cipher_with_grad(self.cipher, images, self.backward_mode(backward))


class LE(NibbleTransform):
    name = "le"
    label = "LE"
    key_fields = ("perm",)
    paper_block_sizes = (4,)
    block_size_from_key = True
    sia_gan_lpips = 0.0914
    cipher: BlockCipher

    @classmethod
    def derive(cls, key: Key, label, block_size, image_size) -> dict[str, np.ndarray]:
        if not key.derives_subkeys and label == FIXED_LABEL and block_size == key.block_size:
            return {"perm": key.imported_permutation()}  # the one key an import holds
        key.require_master(
            "only LE's fixed key at the key file's block size comes from an imported permutation",
            derives=f"sub-key {label!r}",
        )
        return {"perm": le_permutation(key, label, nibble_count(block_size, CHANNELS))}

    def validate(self, arrays):
        self.cipher = BlockCipher(
            validate_permutation(arrays["perm"], self.block_size), self.block_size
        )
        return {"perm": self.cipher.perm}

    def __init__(self, arrays, block_size=4, variant=None, image_size=(32, 32)):
        super().__init__(arrays, block_size, variant, image_size)
        self.fingerprint = self.cipher.fingerprint  # LE's fingerprints predate this package

    @property
    def perm(self) -> np.ndarray:
        return self.cipher.perm

    @property
    def key_space_log2(self) -> float:
        return log2_factorial(nibble_count(self.block_size, CHANNELS))
