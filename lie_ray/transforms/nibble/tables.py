"""Whole-image gather tables for Tanaka's block cipher.

Why tables: the cipher moves every 4-bit nibble to a fixed place (chosen by the key), optionally
reversing it (v -> 15 - v, which is v XOR 15 for 4-bit values). That is the same for every image
of a given size, so we precompute once, per image size, for every output byte:

* the flat input position its HIGH nibble comes from, and how far to shift that input byte left
  so the wanted nibble lands in bits 4..7 (0 when it was a high nibble, 4 when a low one);
* the same for its LOW nibble (shift right by 4 when it was a high nibble, 0 when a low one);
* the XOR mask that applies both reversals at once.

Encryption is then two gathers and five byte-wise ops over the whole batch, with no reshaping
into blocks and no loops (see ``BlockCipher``). The tables are computed directly in the layout of
the caller's array (HWC for NumPy NHWC, CHW for torch NCHW) so no transpose is ever needed.

Derivation of the combined mask (PAPER.md, steps 3-4): with r[i] = key[i] > d, the cipher computes
z[i] = rev_i(y'[key[i]]) where y' = y reversed on r, so z[i] = y[key[i]] XOR 15*(r[i] != r[key[i]]).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Layout = Literal["hwc", "chw"]


@dataclass(frozen=True)
class GatherTables:
    """Per-output-byte gather plan for one image shape, one key direction and one layout.

    All arrays have length H*W*C and index the flattened image in ``layout`` order.
    """

    hi_src: np.ndarray  # int64: input byte feeding the output's high nibble
    hi_shift: np.ndarray  # uint8: left shift (0 or 4) bringing that nibble into bits 4..7
    lo_src: np.ndarray  # int64: input byte feeding the output's low nibble
    lo_shift: np.ndarray  # uint8: right shift (0 or 4) bringing that nibble into bits 0..3
    xor_mask: np.ndarray  # uint8: reversal of both nibbles, applied last

    # Where each INPUT byte's nibbles end up: the transpose of the plan above, used by the
    # BPDA backward pass to gather gradients instead of scattering them.
    hi_dest: np.ndarray  # int64: output byte that receives this input's high nibble
    hi_dest_is_hi: np.ndarray  # bool: ... in the output's high (True) or low (False) nibble
    hi_dest_flipped: np.ndarray  # bool: ... reversed on the way
    lo_dest: np.ndarray
    lo_dest_is_hi: np.ndarray
    lo_dest_flipped: np.ndarray


def block_element_offsets(
    height: int, width: int, channels: int, block_size: int, layout: Layout
) -> np.ndarray:
    """Flat offset of every (block, element) pair: shape (n_blocks, M*M*C).

    Element numbering inside a block follows PAPER.md: e = (row*M + col)*C + channel.
    """
    m = block_size
    br, bc, i, j, ch = np.meshgrid(
        np.arange(height // m),
        np.arange(width // m),
        np.arange(m),
        np.arange(m),
        np.arange(channels),
        indexing="ij",
    )
    rows, cols = br * m + i, bc * m + j
    if layout == "hwc":
        flat = (rows * width + cols) * channels + ch
    else:
        flat = (ch * height + rows) * width + cols
    return flat.reshape((height // m) * (width // m), m * m * channels)


def build_tables(
    perm: np.ndarray,
    reversed_mask: np.ndarray,
    height: int,
    width: int,
    channels: int,
    block_size: int,
    layout: Layout,
) -> GatherTables:
    """Gather tables that apply ``z[i] = y[perm[i]] ^ 15*(rev[i] != rev[perm[i]])`` to every block.

    ``perm`` is the key (encryption) or its inverse (decryption); ``reversed_mask`` is the same
    reversal set for both directions, as PAPER.md specifies. Both are (2d,) for one key in every
    block (LE), or (n_blocks, 2d) for a key per block (ELE, ``lie_ray.transforms.ele``).
    """
    d = block_size * block_size * channels
    offsets = block_element_offsets(height, width, channels, block_size, layout)
    perm = np.broadcast_to(perm, (len(offsets), 2 * d))
    reversed_mask = np.broadcast_to(reversed_mask, perm.shape)

    def pick(values: np.ndarray, index: np.ndarray) -> np.ndarray:  # values[b, index[b, k]]
        return np.take_along_axis(
            np.broadcast_to(values, (len(offsets), values.shape[-1])), index, axis=1
        )

    flip = reversed_mask != pick(reversed_mask, perm)  # per block and nibble position i
    src_nibble = perm  # nibble position each z[i] reads

    # Output element e takes its high nibble from z[d+e] and its low nibble from z[e].
    hi_from, lo_from = src_nibble[:, d:], src_nibble[:, :d]
    hi_elem, lo_elem = hi_from % d, lo_from % d
    hi_from_high, lo_from_high = hi_from >= d, lo_from >= d
    mask = (flip[:, d:].astype(np.uint8) * 0xF0) | (flip[:, :d].astype(np.uint8) * 0x0F)

    n_bytes = height * width * channels
    flat_out = offsets.reshape(-1)

    def per_output(values: np.ndarray, dtype) -> np.ndarray:
        table = np.empty(n_bytes, dtype=dtype)
        table[flat_out] = np.broadcast_to(values, offsets.shape).reshape(-1)
        return table

    # Inverse view for the backward pass: nibble position p (0..2d-1) of an input element lands in
    # z at position inv[p]; z position k < d is the low nibble of output element k, k >= d the high
    # nibble of element k - d.
    inv = np.argsort(perm, axis=1, kind="stable")
    dest_of_lo, dest_of_hi = inv[:, :d], inv[:, d:]  # z positions receiving element e's nibbles

    def dest_tables(dest: np.ndarray):
        return (
            per_output(pick(offsets, dest % d), np.int64),
            per_output(dest >= d, bool),
            per_output(pick(flip, dest), bool),
        )

    hi_dest, hi_dest_is_hi, hi_dest_flipped = dest_tables(dest_of_hi)
    lo_dest, lo_dest_is_hi, lo_dest_flipped = dest_tables(dest_of_lo)

    return GatherTables(
        hi_src=per_output(pick(offsets, hi_elem), np.int64),
        hi_shift=per_output(np.where(hi_from_high, 0, 4), np.uint8),
        lo_src=per_output(pick(offsets, lo_elem), np.int64),
        lo_shift=per_output(np.where(lo_from_high, 4, 0), np.uint8),
        xor_mask=per_output(mask, np.uint8),
        hi_dest=hi_dest,
        hi_dest_is_hi=hi_dest_is_hi,
        hi_dest_flipped=hi_dest_flipped,
        lo_dest=lo_dest,
        lo_dest_is_hi=lo_dest_is_hi,
        lo_dest_flipped=lo_dest_flipped,
    )
