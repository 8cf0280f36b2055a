"""Random draws that belong to an image, not to the batch it landed in.

An attack's random start drawn from the global generator depends on the image's place in the
batch and on every draw before it, so an image attacked alone, in another batch, or by an
evaluation that skips the images already broken (the cascade) would get another start and
possibly another outcome. Here each value is a hash of (seed, image id, draw, position): the
same for an image wherever and with whatever it is attacked, on every device. The hash is
lowbias32 (Chris Wellons' integer-hash search), in int64 arithmetic that never overflows.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

MASK = 0xFFFFFFFF


def salted(seed: int, *salt: str) -> int:
    """The seed of one attack (or one part of it), of the attacker's seed and its name: every
    attack draws its own random starts, keys and queries, so no two evaluations of a scenario
    start an image from the same point (a union over attacks that share their draws is weaker
    than it looks). Still per image: the draws hash (this seed, the image's id, the draw)."""
    text = "/".join((str(seed), *salt)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")


def _mul32(h: torch.Tensor, constant: int) -> torch.Tensor:
    """(h * constant) mod 2**32 for h < 2**32, in two 16-bit halves (int64 never overflows)."""
    low, high = constant & 0xFFFF, constant >> 16
    return (h * low + (((h * high) & 0xFFFF) << 16)) & MASK


def hash32(h: torch.Tensor) -> torch.Tensor:
    h = h & MASK
    h = h ^ (h >> 16)
    h = _mul32(h, 0x7FEB352D)
    h = h ^ (h >> 15)
    h = _mul32(h, 0x846CA68B)
    return h ^ (h >> 16)


def row_keys(ids: np.ndarray | torch.Tensor, seed: int, draw: int, device) -> torch.Tensor:
    """One 32-bit key per image: of the attack's seed, the image's id and the draw (e.g. the
    restart) it is for."""
    ids = torch.as_tensor(np.asarray(ids), dtype=torch.int64, device=device)
    base = hash32(torch.tensor(seed & MASK, dtype=torch.int64, device=device))
    return hash32(hash32(base ^ (ids & MASK)) ^ draw)


def uniform(
    ids, seed: int, draw: int, shape: tuple[int, ...], device, dtype=torch.float32
) -> torch.Tensor:
    """Uniform [0, 1) values of ``shape`` (first dimension: one row per id)."""
    per_row = int(np.prod(shape[1:]))
    positions = hash32(torch.arange(per_row, dtype=torch.int64, device=device))
    values = hash32(row_keys(ids, seed, draw, device)[:, None] ^ positions[None, :])
    return (values.to(torch.float64) / 2**32).to(dtype).reshape(shape)
