"""The cipher inside autograd, for attacks and adversarial training.

The true cipher quantises to 8 bits and splits nibbles: piecewise constant, so its gradient is
zero almost everywhere. A gradient attack through it sees nothing, which is how the paper's
"robustness" arises (obfuscated gradients; Athalye, Carlini & Wagner, ICML 2018). BPDA keeps the
TRUE cipher in the forward pass and swaps in the Jacobian of a smooth surrogate in the backward.

Backward modes:

``none``
    Plain autograd through a float rendering of the true cipher: exactly what an attacker who
    differentiates the pipeline as written gets (all zeros).
``bpda-high``
    Straight-through on the high nibble only: it moves with the pixel at slope 255/16 per unit,
    the low nibble is held constant. Each input pixel influences the two output bytes that
    receive its nibbles.
``bpda-both``
    The local slope of both nibbles: the high one as above, the low one at 255 per unit (the
    slope of the sawtooth between its jumps).
``identity``
    The identity as the cipher's backward: the gradient at each encrypted pixel is applied to
    the plain pixel at the same place (the simplest BPDA, and the reading of the paper's
    protocol that the authors' later key-defence code used).

For every mode, ``smooth_surrogate`` is the function whose Jacobian the backward pass applies.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

from lie_ray.errors import LieRayError
from lie_ray.transforms.nibble.block import BlockCipher, NibbleCipher
from lie_ray.transforms.nibble.kernels_numpy import Direction
from lie_ray.transforms.nibble.kernels_torch import device_tables
from lie_ray.transforms.quantise import to_bytes

BackwardMode = Literal["none", "bpda-high", "bpda-both", "identity"]
BACKWARD_MODES: tuple[str, ...] = get_args(BackwardMode)


def cipher_with_grad(
    cipher: NibbleCipher,
    images: torch.Tensor,
    backward: BackwardMode = "bpda-both",
    direction: Direction = "encrypt",
) -> torch.Tensor:
    """Run the true cipher on float NCHW images in [0, 1] with the chosen backward pass."""
    if backward not in BACKWARD_MODES:
        raise LieRayError(f"unknown backward mode {backward!r}: choose one of {BACKWARD_MODES}")
    if not images.is_floating_point():
        raise LieRayError("cipher_with_grad needs float images in [0, 1]")
    if backward == "none":
        return _true_cipher_float(cipher, images, direction)
    return _BPDACipher.apply(images, cipher, backward, direction)


class _BPDACipher(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, cipher: NibbleCipher, backward: str, direction: str):
        _, _, h, w = images.shape
        ctx.tables = device_tables(cipher, direction, h, w, images.device)
        ctx.backward = backward
        return cipher.encrypt(images) if direction == "encrypt" else cipher.decrypt(images)

    @staticmethod
    def backward(ctx, grad_out):
        if ctx.backward == "identity":
            return grad_out, None, None, None
        n = grad_out.shape[0]
        weight_hi, weight_lo = bpda_weights(ctx.tables, ctx.backward, grad_out.dtype)
        g = grad_out.reshape(n, -1)
        grad_in = g.index_select(1, ctx.tables["hi_dest"]) * weight_hi
        if weight_lo is not None:
            grad_in = grad_in + g.index_select(1, ctx.tables["lo_dest"]) * weight_lo
        return grad_in.reshape(grad_out.shape), None, None, None


def bpda_weights(tables: dict[str, torch.Tensor], backward: str, dtype: torch.dtype):
    """d(output byte)/d(input byte) along each input nibble's path, in units of pixel value.

    A nibble arriving in the output's high half is worth 16x one arriving in its low half; a
    reversal on the way flips the sign; the high nibble moves at 1/16 of the pixel's rate and
    the low nibble at its full rate.
    """

    def routed(is_hi: torch.Tensor, flipped: torch.Tensor, nibble_rate: float) -> torch.Tensor:
        place = torch.where(is_hi, 16.0, 1.0) * nibble_rate
        sign = 1.0 - 2.0 * flipped.to(dtype)
        return (place * sign).to(dtype)

    weight_hi = routed(tables["hi_dest_is_hi"], tables["hi_dest_flipped"], 1 / 16)
    weight_lo = (
        routed(tables["lo_dest_is_hi"], tables["lo_dest_flipped"], 1.0)
        if backward == "bpda-both"
        else None
    )
    return weight_hi, weight_lo


def _true_cipher_float(
    cipher: NibbleCipher, images: torch.Tensor, direction: Direction
) -> torch.Tensor:
    """The true cipher written in differentiable float ops (round, floor, gather, 15 - v).

    Its forward equals the integer cipher; its autograd gradient is whatever torch's rules for
    round and floor give, which is zero: the obfuscated gradient the paper's attack met.
    """
    to_bytes(images)  # validation only: finite, within [0, 1]
    n, _, h, w = images.shape
    t = device_tables(cipher, direction, h, w, images.device)
    levels = torch.floor(images.clamp(0, 1) * 255 + 0.5).reshape(n, -1)

    def nibble(src: torch.Tensor, take_high: torch.Tensor) -> torch.Tensor:
        byte = levels.index_select(1, src)
        high = torch.floor(byte / 16)
        return torch.where(take_high, high, byte - 16 * high)

    high = nibble(t["hi_src"], t["hi_shift"] == 0)
    low = nibble(t["lo_src"], t["lo_shift"] == 4)
    high = torch.where((t["xor_mask"] & 0xF0) > 0, 15 - high, high)
    low = torch.where((t["xor_mask"] & 0x0F) > 0, 15 - low, low)
    return ((16 * high + low) / 255).reshape(images.shape)


def smooth_surrogate(
    cipher: BlockCipher, images: torch.Tensor, anchor: torch.Tensor, backward: BackwardMode
) -> torch.Tensor:
    """The smooth function whose Jacobian the BPDA backward applies, linearised at ``anchor``.

    It equals the true cipher at ``images == anchor``. Written with block reshapes straight from
    PAPER.md rather than the gather tables, so tests comparing the two check one against the
    other.
    """
    if backward == "identity":
        return images - anchor + cipher.encrypt(anchor)
    m, c = cipher.block_size, cipher.channels
    d = m * m * c
    n, _, h, w = images.shape
    level0 = torch.floor(anchor.clamp(0, 1) * 255 + 0.5)
    high0 = torch.floor(level0 / 16)
    offset = 255 * (images - anchor)
    high = high0 + offset / 16
    low = level0 - 16 * high0 + (offset if backward == "bpda-both" else 0 * offset)

    def to_blocks(plane: torch.Tensor) -> torch.Tensor:  # N,C,H,W -> N, blocks, d
        return (
            plane.reshape(n, c, h // m, m, w // m, m)
            .permute(0, 2, 4, 3, 5, 1)
            .reshape(n, (h // m) * (w // m), d)
        )

    nibbles = torch.cat([to_blocks(low), to_blocks(high)], dim=-1)
    reversed_mask = torch.from_numpy(cipher.reversed_mask).to(images.device)
    nibbles = torch.where(reversed_mask, 15 - nibbles, nibbles)
    nibbles = nibbles[..., torch.from_numpy(cipher.perm).to(images.device)]
    nibbles = torch.where(reversed_mask, 15 - nibbles, nibbles)
    joined = (16 * nibbles[..., d:] + nibbles[..., :d]) / 255
    return joined.reshape(n, h // m, w // m, m, m, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
