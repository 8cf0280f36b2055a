"""Literal, loop-by-loop renderings of the family's reference algorithms (TRANSFORMS.md),
independent of lie_ray's code: every block, pixel and channel one at a time, as the
references' steps read. Slow on purpose; tests compare lie_ray's vectorised transforms to them.
"""

from __future__ import annotations

import numpy as np
from literal_cipher import literal_encrypt_image

PE_TABLE = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]


def block_vectors(image, m):
    """{(block_row, block_col): [values in (row, col, channel) order]}."""
    h, w, c = image.shape
    return {
        (br, bc): [
            int(image[br * m + i, bc * m + j, ch])
            for i in range(m)
            for j in range(m)
            for ch in range(c)
        ]
        for br in range(h // m)
        for bc in range(w // m)
    }


def write_block(out, br, bc, m, values):
    c = out.shape[2]
    for e, v in enumerate(values):
        i, rest = divmod(e, m * c)
        j, ch = divmod(rest, c)
        out[br * m + i, bc * m + j, ch] = v


def shuffle(image, perm, m):
    """keydefense.py Shuffle: X[..., perm] on every block vector."""
    out = np.zeros_like(image)
    for (br, bc), vec in block_vectors(image, m).items():
        write_block(out, br, bc, m, [vec[perm[j]] for j in range(len(vec))])
    return out


def negative_positive(image, flip, m):
    """keydefense.py NP on bytes: 255 - v at key positions."""
    out = np.zeros_like(image)
    for (br, bc), vec in block_vectors(image, m).items():
        write_block(out, br, bc, m, [255 - v if flip[j] else v for j, v in enumerate(vec)])
    return out


def ffx(image, flip, lookup, m, reference):
    """keydefense.py FFX on float32 images x = v / 255: floor(255 x) (reference) or the level
    itself; lookup at key positions; divide by lookup.max() (every value in the reference,
    key positions only otherwise, the rest by 255)."""
    peak = np.float32(max(lookup))
    h, w, c = image.shape
    out = np.zeros((h, w, c), dtype=np.float32)
    for (br, bc), vec in block_vectors(image, m).items():
        values = []
        for j, v in enumerate(vec):
            x = np.float32(v) / np.float32(255)
            level = int(np.floor(np.float32(255) * x)) if reference else v
            if flip[j]:
                values.append(np.float32(lookup[level]) / peak)
            else:
                values.append(np.float32(level) / (peak if reference else np.float32(255)))
        write_block(out, br, bc, m, values)
    return out


def pe(image, inv, colour):
    """Pixel-based encryption: negative-positive where inv == 0, then per-pixel colour shuffle."""
    h, w, c = image.shape
    out = np.zeros_like(image)
    for r in range(h):
        for col in range(w):
            flipped = [
                255 - int(image[r, col, ch])
                if inv[(r * w + col) * c + ch] == 0
                else int(image[r, col, ch])
                for ch in range(c)
            ]
            table = PE_TABLE[colour[r * w + col]]
            for ch in range(c):
                out[r, col, ch] = flipped[table[ch]]
    return out


def _rotate_ccw(block):
    m = block.shape[0]
    out = np.zeros_like(block)
    for i in range(m):
        for j in range(m):
            out[i, j] = block[j, m - 1 - i]  # np.rot90(k=1) on (row, col)
    return out


def etc(image, key, m, reference):
    """etc_encryption.py generalised to M: per block rotate, negative-positive, flip, colour
    change, then output block i = input block shuffle[i]. ``reference``: the colour change
    assigns channels in place through one array, as the reference's aliased views do."""
    h, w, c = image.shape
    nbw = w // m
    work = image.astype(np.int64).copy()
    for b in range(len(key["shuffle"])):
        br, bc = divmod(b, nbw)
        block = work[br * m : (br + 1) * m, bc * m : (bc + 1) * m, :].copy()
        for _ in range({0: 1, 1: 2, 2: 3, 3: 0}[int(key["rotate"][b])]):
            block = _rotate_ccw(block)
        if key["negaposi"][b] == 0:
            block = 255 - block
        if key["reverse"][b] == 0:
            block = block[::-1, :, :].copy()
        elif key["reverse"][b] == 1:
            block = block[:, ::-1, :].copy()
        code = int(key["channel"][b])
        if reference:  # the reference's assignments, in its order, on ONE array
            moves = {
                0: [],
                1: [(0, 1), (1, 0)],
                2: [(0, 2), (2, 0)],
                3: [(1, 2), (2, 1)],
                4: [(0, 2), (1, 0), (2, 1)],
                5: [(0, 1), (1, 2), (2, 0)],
            }[code]
            for dst, src in moves:
                block[:, :, dst] = block[:, :, src]
        else:
            block = block[:, :, list(PE_TABLE[code])].copy()
        work[br * m : (br + 1) * m, bc * m : (bc + 1) * m, :] = block
    out = np.zeros_like(work)
    for i, src in enumerate(key["shuffle"]):
        a, b = divmod(i, nbw)
        row, col = divmod(int(src), nbw)
        out[a * m : (a + 1) * m, b * m : (b + 1) * m] = work[
            row * m : (row + 1) * m, col * m : (col + 1) * m
        ]
    return out.astype(np.uint8)


def ele(image, perms, block_perm, m):
    """Blockwise_scramble.py + Block_location_shuffle.py: LE with key number r * (W/M) + c in
    the block at grid row r, column c, then output block i = input block block_perm[i]."""
    h, w, _ = image.shape
    nbw = w // m
    scrambled = np.zeros_like(image)
    for b in range(len(block_perm)):
        r, c = divmod(b, nbw)
        block = image[r * m : (r + 1) * m, c * m : (c + 1) * m]
        scrambled[r * m : (r + 1) * m, c * m : (c + 1) * m] = literal_encrypt_image(
            block, list(perms[b]), m
        )
    out = np.zeros_like(image)
    for i, src in enumerate(block_perm):
        a, b = divmod(i, nbw)
        row, col = divmod(int(src), nbw)
        out[a * m : (a + 1) * m, b * m : (b + 1) * m] = scrambled[
            row * m : (row + 1) * m, col * m : (col + 1) * m
        ]
    return out
