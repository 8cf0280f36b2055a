"""Every derived key comes from here: HKDF-SHA256 (RFC 5869) of the master secret, by label.

A transform's key arrays for a sub-key label (``fixed``, ``batch/train/17``,
``minibatch/3/40``, ``image/test/3``) are drawn from ``Key.stream(info, n)``, so id-group,
per-minibatch and per-image keys are reproducible
anywhere the master is, without ever being stored. Long draws come in chunks of their own info
(HKDF expands at most 255 hash blocks per call).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from lie_ray.keys.files import Key

HKDF_SALT = b"lie_ray/key-derivation/v1"
_HKDF_MAX_U64 = 255 * 32 // 8


def hkdf_sha256(secret: bytes, info: bytes, length: int, salt: bytes = HKDF_SALT) -> bytes:
    """HKDF (RFC 5869) extract-and-expand with HMAC-SHA256, by the ``cryptography`` package:
    4x faster than HMAC in a Python loop, which matters where every image has its own key
    (Random PE derives 32 KB per image). At most 255 hash blocks (8,160 bytes) per call, as the
    RFC says; longer draws come in chunks (``derive_u64``)."""
    return HKDF(hashes.SHA256(), length, salt, info).derive(secret)


def derive_u64(key: Key, info: str, count: int) -> np.ndarray:
    """``count`` pseudorandom 64-bit values from (master secret, info)."""
    if count <= _HKDF_MAX_U64:
        return np.frombuffer(key.stream(info, 8 * count), dtype="<u8").copy()
    chunks = [
        key.stream(f"{info}/chunk/{start}", 8 * min(_HKDF_MAX_U64, count - start))
        for start in range(0, count, _HKDF_MAX_U64)
    ]
    return np.frombuffer(b"".join(chunks), dtype="<u8").copy()


def uniform_permutation(draws: np.ndarray) -> np.ndarray:
    """The permutation that sorts 64-bit draws: uniform up to ties, which occur with
    probability below size**2 / 2**64 and are then broken by position (stable sort)."""
    return np.argsort(draws, kind="stable").astype(np.int64)


def derive_permutation(key: Key, info: str, size: int) -> np.ndarray:
    """A uniform permutation of 0..size-1 for ``info``."""
    return uniform_permutation(derive_u64(key, f"{info}/perm/{size}", size))


def le_permutation(key: Key, label: str, size: int) -> np.ndarray:
    """LE's key for ``label``: the derivation every LE key of lie_ray has had (its info string
    predates the family's ``subkey_info``), so existing keys keep their ciphers."""
    return uniform_permutation(derive_u64(key, f"permutation/{size}/{label}", size))


def derive_choices(key: Key, info: str, count: int, high: int) -> np.ndarray:
    """``count`` values in 0..high-1 (modulo bias below 2**-58 for the small ``high`` used)."""
    return (derive_u64(key, f"{info}/choice/{count}/{high}", count) % high).astype(np.int64)


def subkey_info(name: str, label: str, block_size: int, image_size) -> str:
    """The info prefix of transform ``name``'s key arrays for ``label``."""
    return f"transform/{name}/{block_size}/{image_size[0]}x{image_size[1]}/{label}"


def log2_factorial(n: int) -> float:
    return math.lgamma(n + 1) / math.log(2)


def log2_binomial(n: int, k: int) -> float:
    return log2_factorial(n) - log2_factorial(k) - log2_factorial(n - k)
