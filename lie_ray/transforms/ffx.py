"""FFX: block-wise format-preserving encryption (AprilPyone & Kiya, IEEE TIFS 2021;
``fugokidi/block_transform``), with the ``pyffx`` package.

A lookup table ``pyffx.Integer(password, length=3)`` over 0..255 (values 0..999) replaces the
8-bit level of every value at the binary key's positions (one key for every block, drawn as
``randperm(d) > d / 2`` like NP). Output is float32. Key arrays: ``flip`` (d booleans) and
``lookup`` (256 distinct values in 0..999); ``from_arrays`` also takes ``password`` instead.

Variants: ``paper`` (default) divides key positions by the lookup's maximum and the others by
255, so untouched values keep their meaning, and quantises floats by rounding; ``reference``
does what the reference code does: ``floor(255 x)`` and EVERY value divided by the maximum.
A lookup is not differentiable: the attack's backward is BPDA (straight-through identity).
"""

from __future__ import annotations

import functools
from functools import cached_property

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import derive_u64, subkey_info
from lie_ray.transforms.base import (
    Transform,
    numpy_batch,
    tile_block_mask,
    torch_batch,
    torch_module,
)
from lie_ray.transforms.negative import binary_key, check_flip, reference_key_space_log2

LOOKUP_SIZE, CODE_SPACE = 256, 1000
# The password the reference code fixes (fugokidi/block_transform): public, so a lookup made
# from it adds nothing to the key space. lie_ray derives its own from the master key: 128
# bits (two 64-bit words), which the key space counts.
PUBLISHED_PASSWORD = b"password"
DERIVED_PASSWORD_BITS = 128


def ffx_lookup(password: str | bytes) -> np.ndarray:
    """``pyffx.Integer(password, length=3).encrypt(v)`` for v in 0..255, as the reference."""
    import pyffx

    secret = password.encode() if isinstance(password, str) else password
    cipher = pyffx.Integer(secret, length=3)
    return np.array([cipher.encrypt(v) for v in range(LOOKUP_SIZE)], dtype=np.int64)


@functools.lru_cache(maxsize=1)
def published_lookup() -> np.ndarray:
    """The lookup of the reference's published password: what any attacker can compute."""
    return ffx_lookup(PUBLISHED_PASSWORD)


class FFX(Transform):
    name = "ffx"
    label = "FFX"
    key_fields = ("flip",)  # and "lookup", or the "password" it is made from
    brute_forceable = True  # binary flip keys per block (privacy.brute_force)
    # The password is out of reach (a keyed PRP), but pairs reveal the table it makes and the
    # binary key (lie_ray.privacy.recover_ffx).
    known_plaintext = True
    gradient = "bpda"
    adaptation = False
    variants = ("paper", "reference")
    paper_block_sizes = (4, 2, 8)
    output_dtype = "float32"
    backwards = ("bpda", "none")

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        password = (
            derive_u64(key, subkey_info(cls.name, label, block_size, image_size) + "/password", 2)
            .tobytes()
            .hex()
        )
        return {
            "flip": binary_key(key, cls.name, label, block_size, image_size),
            "lookup": ffx_lookup(password),
        }

    def validate(self, arrays):
        if "lookup" not in arrays and "password" in arrays:
            arrays = {**arrays, "lookup": ffx_lookup(arrays["password"])}
        lookup = np.asarray(arrays["lookup"])
        if (
            lookup.shape != (LOOKUP_SIZE,)
            or len(np.unique(lookup)) != LOOKUP_SIZE
            or lookup.min() < 0
            or lookup.max() >= CODE_SPACE
        ):
            raise LieRayError(
                "FFX key 'lookup' must hold 256 distinct values in 0..999 (or pass 'password')"
            )
        return {
            "flip": check_flip(arrays, self.block_size, self.name),
            "lookup": lookup.astype(np.int64),
        }

    @property
    def key_space_log2(self) -> float:
        """The binary key's space as the reference draws it, plus the password's: nothing
        for the reference's published one, 128 bits for a password lie_ray derives (or any
        other, whose strength the lookup alone cannot tell)."""
        return reference_key_space_log2(self.block_size) + (
            0 if self.uses_published_password else DERIVED_PASSWORD_BITS
        )

    @property
    def uses_published_password(self) -> bool:
        return bool(np.array_equal(self.arrays["lookup"], published_lookup()))

    # ------------------------------------------------------------ tables
    @cached_property
    def _hwc(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(flip mask, per-position divisor, inverse lookup) with images laid out HWC."""
        flip = tile_block_mask(self.arrays["flip"], self.block_size, self.image_size)
        peak = float(self.arrays["lookup"].max())
        divisor = np.where(flip, peak, peak if self.variant == "reference" else 255.0)
        inverse = np.full(CODE_SPACE, -1, dtype=np.int64)
        inverse[self.arrays["lookup"]] = np.arange(LOOKUP_SIZE)
        return flip, divisor.astype(np.float32), inverse

    @cached_property
    def _encrypt_table(self) -> tuple[np.ndarray, np.ndarray]:
        """Encryption as ONE gather: a 512-entry float32 table (kept levels, then looked-up
        ones, each already divided) indexed by level + 256 * flip (uint16, per HWC position)."""
        flip, divisor, _ = self._hwc
        peak = np.float32(self.arrays["lookup"].max())
        kept = np.arange(LOOKUP_SIZE, dtype=np.float32) / (
            peak if self.variant == "reference" else np.float32(255)
        )
        table = np.concatenate([kept, self.arrays["lookup"].astype(np.float32) / peak])
        return table, flip.astype(np.uint16) * np.uint16(LOOKUP_SIZE)

    def _chw(self, device):
        import torch

        cache_key = ("chw", str(device))
        if cache_key not in self.device_tables:
            flip, divisor, inverse = self._hwc
            table, offset = self._encrypt_table
            self.device_tables[cache_key] = {
                "flip": torch.from_numpy(np.ascontiguousarray(flip.transpose(2, 0, 1))).to(device),
                "divisor": torch.from_numpy(np.ascontiguousarray(divisor.transpose(2, 0, 1))).to(
                    device
                ),
                "offset": np.ascontiguousarray(offset.transpose(2, 0, 1)),
                "table": torch.from_numpy(table).to(device),
                "inverse": torch.from_numpy(inverse).to(device),
            }
        return self.device_tables[cache_key]

    # ------------------------------------------------------------ exact paths
    def encrypt(self, images):
        if isinstance(images, np.ndarray):
            numpy_batch(images, self.image_size)
            table, offset = self._encrypt_table
            return np.take(table, images + offset)  # uint8 + uint16: uint16 indices
        torch = torch_module(images)
        t = self._chw(images.device)
        levels = self._levels(torch_batch(images, self.image_size))
        if levels.device.type == "cpu":  # NumPy's take is several times faster here
            out = torch.from_numpy(
                np.take(t["table"].numpy(), levels.contiguous().numpy() + t["offset"])
            )
        else:
            index = levels.long() + torch.from_numpy(t["offset"]).to(levels.device).long()
            out = t["table"][index]
        return out.reshape(images.shape)

    def decrypt(self, images, dtype=None):
        """Back to levels: uint8 for NumPy; for torch, float32 in [0, 1] unless ``dtype``."""
        if isinstance(images, np.ndarray):
            return self._check(self._numpy_levels(images), np).astype(dtype or np.uint8)
        torch = torch_module(images)
        t = self._chw(images.device)
        codes = torch.round(torch_batch(images, self.image_size) * t["divisor"]).long()
        levels = self._check(
            torch.where(t["flip"], t["inverse"][codes.clamp(0, CODE_SPACE - 1)], codes), torch
        )
        dtype = dtype or torch.float32
        out = levels.to(dtype) if dtype == torch.uint8 else levels.to(dtype) / 255
        return out.reshape(images.shape)

    def decrypt_any(self, images):
        """NumPy decryption, levels this key's table cannot explain read as 0."""
        levels = self._numpy_levels(images)
        return np.where((levels < 0) | (levels > 255), 0, levels).astype(np.uint8)

    def _numpy_levels(self, images: np.ndarray) -> np.ndarray:
        flip, divisor, inverse = self._hwc
        codes = np.rint(images * divisor).astype(np.int64)
        return np.where(flip, inverse[codes.clip(0, CODE_SPACE - 1)], codes)

    def _levels(self, batch):
        """8-bit levels of a torch batch: rounding (paper) or the reference's floor(255 x)."""
        import torch

        if batch.dtype == torch.uint8:
            return batch
        rounding = 0 if self.variant == "reference" else 0.5
        return torch.floor(batch.detach().clamp(0, 1) * 255 + rounding).to(torch.uint8)

    @staticmethod
    def _check(levels, xp):
        if bool((levels < 0).any()) or bool((levels > 255).any()):
            raise LieRayError(
                "these values are not an FFX ciphertext of this key: decrypt with "
                "the key (and variant) that encrypted them"
            )
        return levels

    # ------------------------------------------------------------ the attack's forward
    def with_grad(self, images, backward=None):
        encrypted = self.encrypt(images).to(images.dtype)
        if self.backward_mode(backward) == "none":  # plain autograd through a lookup: zero
            return encrypted + 0 * images
        return images + (encrypted - images).detach()  # BPDA: straight-through identity
