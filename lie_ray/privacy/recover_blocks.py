"""Key recovery for EtC: a geometric and colour operation per block, then a block shuffle.

There are 4 rotations x 3 flips x 2 negative-positive x 6 colour codes = 144 per-block
operations. Rather than re-deriving them, the attacker (who knows the algorithm) applies each
to the plain image with EtC itself (the same operation in every block, no shuffle): output
block i must equal operation o of plain block j. A (blocks x blocks x 144) table of such
candidates is ANDed over the observed pairs. Rotation codes and flips overlap (12 codes, 8
distinct maps of a square), so the key is recovered up to those identities: a recovered key is
judged by what it does (``known_plaintext.equivalent``), not by its codes.
"""

from __future__ import annotations

import numpy as np

from lie_ray import transforms
from lie_ray.privacy.recover_positions import block_bytes
from lie_ray.transforms.etc import FIELDS

HIGHS = tuple(FIELDS.values())
OPERATIONS = int(np.prod(HIGHS))  # 144


class EtcCandidates:
    def __init__(self, block_size: int, channels: int = 3, image_size=(32, 32)):
        self.block_size = block_size
        n = (image_size[0] // block_size) * (image_size[1] // block_size)
        self.table = np.ones((n, n, OPERATIONS), dtype=bool)  # out block, in block, operation
        codes = np.unravel_index(np.arange(OPERATIONS), HIGHS)
        self.operations = [
            transforms.from_arrays(
                "etc",
                {
                    **{field: np.full(n, code[o]) for field, code in zip(FIELDS, codes)},
                    "shuffle": np.arange(n),
                },
                block_size,
            )
            for o in range(OPERATIONS)
        ]
        self.codes = codes
        # Operations that act identically on every block (e.g. a half turn and both flips)
        # share a class: the key is settled once each block's survivors share one.
        probe = np.random.default_rng(0).integers(0, 256, (1, *image_size, channels), np.uint8)
        _, self.op_class = np.unique(
            np.stack([op.encrypt(probe).reshape(-1) for op in self.operations]),
            axis=0,
            return_inverse=True,
        )

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        n = len(self.table)
        variants = np.stack(
            [
                block_bytes(op.encrypt(plain), self.block_size).reshape(len(plain), n, -1)
                for op in self.operations
            ],
            axis=2,
        )  # (image, in, op, values)
        out = block_bytes(cipher, self.block_size).reshape(len(plain), n, -1)
        for image in range(len(plain)):  # one pair at a time bounds memory (28 MB each)
            self.table &= (out[image][:, None, None, :] == variants[image][None]).all(axis=3)

    @property
    def determined(self) -> bool:
        sources = self.table.any(axis=2)
        if not (
            (sources.sum(axis=1) == 1).all()
            and len(np.unique(sources.argmax(axis=1))) == len(sources)
        ):
            return False
        survivors = self.table[np.arange(len(sources)), sources.argmax(axis=1)]  # (out, op)
        classes = np.where(survivors, self.op_class.reshape(1, -1), -1)
        lowest = np.where(survivors, self.op_class.reshape(1, -1), OPERATIONS).min(axis=1)
        return bool((classes.max(axis=1) == lowest).all())

    def arrays(self) -> dict[str, np.ndarray]:
        flat = self.table.reshape(len(self.table), -1)
        source, operation = np.divmod(flat.argmax(axis=1), OPERATIONS)
        arrays = {field: np.zeros(len(source), np.int64) for field in FIELDS}
        for field, code in zip(FIELDS, self.codes):
            arrays[field][source] = code[operation]  # per-block keys belong to input blocks
        return {**arrays, "shuffle": source.astype(np.int64)}
