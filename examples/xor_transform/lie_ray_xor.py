"""An example of a transform written outside lie_ray: block-wise XOR with a keyed byte mask.

Every M x M block of the image is XORed with the same secret mask of M * M * 3 bytes, one per
position and channel. It is here to show what a transform of your own needs, not as a defence:
one known (plain, encrypted) pair gives the whole key away (mask = plain XOR cipher), which
lie_ray's privacy phase and its recovered-key attacks will show.

What lie_ray needs from a transform (``lie_ray.transforms.Transform`` says each fact):
- its facts as class attributes: name, label, key_fields, gradient, adaptation, ...;
- ``derive`` (key arrays from lie_ray's master key, per sub-key label), ``validate``,
  ``key_space_log2``, ``encrypt`` and ``decrypt`` (uint8 NHWC NumPy arrays, and float NCHW
  tensors in [0, 1]) and ``with_grad`` (the attack's forward and its backward);
- optionally a known-plaintext ``recoverer`` for the privacy phase and the recovered-key attacks.

Declared to lie_ray in this package's pyproject.toml:

    [project.entry-points."lie_ray.transforms"]
    xor = "lie_ray_xor:BlockXor"

or, within one process, ``lie_ray.transforms.register(BlockXor)``.
"""

from __future__ import annotations

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys.derive import subkey_info
from lie_ray.transforms import Transform
from lie_ray.transforms.base import CHANNELS, numpy_batch, tile_block_mask, torch_batch


class BlockXor(Transform):
    name = "xor"
    label = "XOR"
    key_fields = ("mask",)
    gradient = "bpda"  # XOR on bytes has no useful derivative: attacks use a surrogate
    backwards = ("identity", "none")  # straight-through (BPDA), or plain autograd (zero)
    adaptation = True  # per-block byte scrambling, as LE: Tanaka's adaptation network learns it
    paper_block_sizes = (4, 2, 8)
    known_plaintext = True  # XorCandidates, below

    @classmethod
    def derive(cls, key, label, block_size, image_size):
        info = subkey_info(cls.name, label, block_size, image_size)
        size = block_size * block_size * CHANNELS
        return {"mask": np.frombuffer(key.stream(f"{info}/mask", size), np.uint8).copy()}

    def validate(self, arrays):
        mask = np.asarray(arrays["mask"])
        size = self.block_size * self.block_size * CHANNELS
        if mask.shape != (size,) or mask.min() < 0 or mask.max() > 255:
            raise LieRayError(
                f"xor key 'mask' must hold {size} bytes for block size {self.block_size}"
            )
        return {"mask": mask.astype(np.uint8)}

    @property
    def key_space_log2(self) -> float:
        return 8.0 * self.block_size * self.block_size * CHANNELS

    def _image_mask(self) -> np.ndarray:
        """The mask tiled over the whole image, HWC."""
        return tile_block_mask(self.arrays["mask"], self.block_size, self.image_size)

    def encrypt(self, images):
        if isinstance(images, np.ndarray):
            return numpy_batch(images, self.image_size).reshape(images.shape) ^ self._image_mask()
        import torch

        batch = torch_batch(images, self.image_size)
        levels = torch.round(batch.detach() * 255).to(torch.uint8)
        mask = torch.from_numpy(self._image_mask()).permute(2, 0, 1).to(levels.device)
        return ((levels ^ mask).to(images.dtype) / 255).reshape(images.shape)

    decrypt = encrypt  # XOR is its own inverse

    def with_grad(self, images, backward=None):
        encrypted = self.encrypt(images)
        if self.backward_mode(backward) == "none":  # plain autograd through bytes: zero
            return encrypted + 0 * images
        return images + (encrypted - images).detach()  # BPDA: straight-through identity


class XorCandidates:
    """Known-plaintext recovery: each pair shows mask = plain XOR cipher at every position."""

    def __init__(self, block_size: int, channels: int = CHANNELS):
        self.block_size, self.mask = block_size, None

    def observe(self, plain: np.ndarray, cipher: np.ndarray) -> None:
        m = self.block_size
        first_block = (plain[0, :m, :m] ^ cipher[0, :m, :m]).reshape(-1)
        self.mask = first_block

    @property
    def determined(self) -> bool:
        return self.mask is not None

    def arrays(self) -> dict[str, np.ndarray]:
        size = self.block_size * self.block_size * CHANNELS
        return {"mask": self.mask if self.mask is not None else np.zeros(size, np.uint8)}


BlockXor.recoverer = XorCandidates
