"""What every key-based image transform offers, and the machinery most of them share.

A transform is built from key ARRAYS in its reference implementation's format (``key_arrays``
gives them back: the ground truth a key-recovery test compares against), or derived from
lie_ray's master key by label. It encrypts and decrypts exactly on uint8 NHWC NumPy arrays and
on torch NCHW tensors (uint8, or float in [0, 1], quantised by rounding as ``transforms.quantise``
says), and offers ``with_grad``: the forward an attack differentiates, with the TRUE gradient
where the transform is differentiable on floats and a BPDA backward where it is not.

Most of the family (Shuffle, NP, PE, EtC) is a fixed rearrangement of the image's values with
some of them negated. ``GatherTransform`` runs any such transform as ONE gather plus one XOR
per image size: its subclasses only say, in ``plan``, how the steps of their paper move and
negate the values of an index image, so the steps read as in the paper while the data path
never loops over blocks or pixels.
"""

from __future__ import annotations

import hashlib
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys import FIXED_LABEL, IMAGE_SIZE, Key

if TYPE_CHECKING:
    import torch

_FINGERPRINT_PREFIX = b"lie_ray/transform-fingerprint/v1\0"
CHANNELS = 3


class Transform:
    """One keyed transform. Subclasses set the class attributes and implement the hooks.

    Everything true of a transform is a class attribute here, read by the parts that need it
    (training, evaluation, privacy attacks, report); none of them keeps a table keyed by name.
    ``REQUIRED_FACTS`` have no default: the registry refuses a class that lacks one.
    """

    REQUIRED_FACTS: ClassVar[tuple[str, ...]] = (
        "name",
        "label",
        "gradient",
        "adaptation",
        "key_fields",
    )
    # -- identity
    name: ClassVar[str]  # registry, scenario records and tables
    label: ClassVar[str]  # how reports and the family's scenario names call it
    # -- key
    key_fields: ClassVar[tuple[str, ...]]  # required key arrays, in the reference's format
    variants: ClassVar[tuple[str, ...]] = ("paper",)  # the first is the default
    paper_block_sizes: ClassVar[tuple[int, ...]] = (4,)  # the first is the default
    block_size_from_key: ClassVar[bool] = False  # default block size: the key file's (LE)
    # -- learning and attacks
    adaptation: ClassVar[bool]  # does its reference put Tanaka's adaptation network in front?
    gradient: ClassVar[str]  # "true": differentiable on floats; "bpda": needs a surrogate
    backwards: ClassVar[tuple[str, ...]] = ("true",)  # accepted by with_grad; first = default
    output_dtype: ClassVar[str] = "uint8"
    # -- which privacy attacks apply (lie_ray.privacy)
    pixelwise: ClassVar[bool] = False  # key acts per pixel: no block structure for the ITN
    keeps_block_stats: ClassVar[bool] = False  # values stay in their block: block means leak
    brute_forceable: ClassVar[bool] = False  # a binary key per block small enough to enumerate
    known_plaintext: ClassVar[bool] = True  # a known-plaintext key recovery exists
    # An outside transform's known-plaintext recovery (the family's are lie_ray.privacy's):
    # a class with observe(plain, cipher), determined and arrays(), built (block_size, channels).
    recoverer: ClassVar[type | None] = None
    flat_colour_probe: ClassVar[bool] = False  # chosen plaintext: a flat colour reveals the key
    sia_gan_lpips: ClassVar[float | None] = None  # SIA-GAN's published LPIPS (TRANSFORMS.md)

    def __init__(
        self,
        arrays: dict[str, np.ndarray],
        block_size: int = 4,
        variant: str | None = None,
        image_size: tuple[int, int] = IMAGE_SIZE,
    ):
        self.block_size = check_block_size(block_size, image_size)
        self.variant = self.check_variant(variant)
        self.image_size = tuple(image_size)
        self.arrays = self.validate(arrays)
        self.fingerprint = fingerprint(self.name, self.block_size, self.variant, self.arrays)
        self.device_tables: dict[tuple, dict[str, Any]] = {}  # per direction and device

    def __repr__(self) -> str:  # never the key itself
        return (
            f"{type(self).__name__}(block_size={self.block_size}, variant={self.variant}, "
            f"fingerprint={self.fingerprint})"
        )

    # ------------------------------------------------------------ what subclasses provide
    @classmethod
    def from_key(
        cls, key: Key, label: str, block_size: int, variant: str | None, image_size: tuple[int, int]
    ) -> Transform:
        return cls(cls.derive(key, label, block_size, image_size), block_size, variant, image_size)

    @classmethod
    def derive(
        cls, key: Key, label: str, block_size: int, image_size: tuple[int, int]
    ) -> dict[str, np.ndarray]:
        """Key arrays for ``label`` from the master key, drawn as the reference draws them."""
        raise NotImplementedError

    def validate(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The arrays, checked and normalised, or a one-line ``LieRayError``."""
        raise NotImplementedError

    @property
    def key_space_log2(self) -> float:
        raise NotImplementedError

    def encrypt(self, images):
        raise NotImplementedError

    def decrypt(self, images):
        raise NotImplementedError

    def decrypt_any(self, images):
        """Decryption that never refuses, for a key an attacker recovered only in part. Most
        transforms decrypt anything; one that checks its input (FFX) reads what its key
        cannot explain as level 0."""
        return self.decrypt(images)

    def with_grad(self, images: torch.Tensor, backward: str | None = None) -> torch.Tensor:
        raise NotImplementedError

    # ------------------------------------------------------------ shared
    @classmethod
    def default_block_size(cls, block_size: int | None, key_block_size: int) -> int:
        """``block_size`` when given, else the key file's (LE) or the paper's first."""
        if block_size is not None:
            return block_size
        return key_block_size if cls.block_size_from_key else cls.paper_block_sizes[0]

    def key_arrays(self) -> dict[str, np.ndarray]:
        """Copies of the key in the reference format (ground truth for key-recovery tests)."""
        return {name: np.array(value) for name, value in self.arrays.items()}

    @classmethod
    def check_variant(cls, variant: str | None) -> str:
        if variant is None:
            return cls.variants[0]
        if variant not in cls.variants:
            raise LieRayError(
                f"transform {cls.name!r} has no variant {variant!r}: choose one of "
                f"{', '.join(cls.variants)} (default {cls.variants[0]})"
            )
        return variant

    def backward_mode(self, backward: str | None) -> str:
        """Map an evaluation's backward name onto this transform's: a transform with a true
        gradient always uses it; BPDA transforms take ``none`` (plain autograd) or a surrogate."""
        if backward is None or backward == "default" or self.gradient == "true":
            return self.backwards[0]
        if backward in self.backwards:
            return backward
        # Any BPDA surrogate, or the identity, maps onto this transform's own surrogate
        # (FFX's is straight-through: the identity).
        return (
            self.backwards[0] if backward.startswith("bpda") or backward == "identity" else "none"
        )


def check_block_size(block_size: int, image_size: tuple[int, int]) -> int:
    height, width = image_size
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or block_size < 1
        or height % block_size
        or width % block_size
    ):
        raise LieRayError(
            f"block size {block_size!r} does not divide the image size "
            f"{height}x{width}: use 2, 4 or 8 for CIFAR-10"
        )
    return int(block_size)


def fingerprint(name: str, block_size: int, variant: str, arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256(_FINGERPRINT_PREFIX + f"{name}/{block_size}/{variant}".encode())
    for field in sorted(arrays):
        value = np.ascontiguousarray(arrays[field])
        digest.update(f"\0{field}/{value.dtype.str}/{value.shape}\0".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()[:16]


# ---------------------------------------------------------------- block layout helpers
def to_blocks(image: np.ndarray, m: int) -> np.ndarray:
    """(H, W, C) -> (n_blocks, M, M, C), blocks in row-major order."""
    h, w, c = image.shape
    return image.reshape(h // m, m, w // m, m, c).transpose(0, 2, 1, 3, 4).reshape(-1, m, m, c)


def from_blocks(blocks: np.ndarray, h: int, w: int) -> np.ndarray:
    m, c = blocks.shape[1], blocks.shape[3]
    return blocks.reshape(h // m, w // m, m, m, c).transpose(0, 2, 1, 3, 4).reshape(h, w, c)


def tile_block_mask(values: np.ndarray, m: int, image_size: tuple[int, int]) -> np.ndarray:
    """A per-block-element array (M*M*C,) repeated over every block, as an (H, W, C) image."""
    h, w = image_size
    blocks = np.broadcast_to(
        values.reshape(1, m, m, -1), ((h // m) * (w // m), m, m, values.size // (m * m))
    )
    return from_blocks(np.ascontiguousarray(blocks), h, w)


# ---------------------------------------------------------------- gather transforms
class GatherPlan:
    """An index image and a negation image, moved together through a transform's steps.

    Start: ``source`` holds each value's own flat HWC position, nothing negated. Every step
    that moves values moves both arrays; every negative-positive step toggles ``negated``. At
    the end, output value i is ``source[i]`` of the input, negated when ``negated[i]``.
    """

    def __init__(self, height: int, width: int, channels: int = CHANNELS):
        self.source = np.arange(height * width * channels, dtype=np.int64).reshape(
            height, width, channels
        )
        self.negated = np.zeros((height, width, channels), dtype=bool)

    def move(self, step) -> GatherPlan:
        """Apply ``step`` (an (H, W, C) -> (H, W, C) rearrangement) to both arrays."""
        self.source, self.negated = step(self.source), step(self.negated)
        return self

    def negate(self, mask: np.ndarray) -> GatherPlan:
        self.negated = self.negated ^ np.asarray(mask, dtype=bool)
        return self


class GatherTransform(Transform):
    """A transform that rearranges values and negates some: one gather, one XOR."""

    lossless: ClassVar[bool] = True

    def plan(self, plan: GatherPlan) -> GatherPlan:
        """Run the transform's steps on ``plan`` (the image size is ``self.image_size``)."""
        raise NotImplementedError

    @property
    def invertible(self) -> bool:
        return True

    def tables(self, direction: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
        """(source, negated) for every output value, indexing the flat image in ``layout``
        (``hwc`` for NumPy NHWC, ``chw`` for torch NCHW). Cached per transform."""
        return _gather_tables(self, direction, layout)

    # -- exact paths
    def encrypt(self, images):
        return self._apply(images, "encrypt")

    def decrypt(self, images):
        if not self.invertible:
            raise LieRayError(
                f"{self.name} variant {self.variant!r} loses information (the "
                "reference's aliased colour shuffle) and cannot be decrypted: use "
                f"variant {self.variants[0]!r} for an invertible transform"
            )
        return self._apply(images, "decrypt")

    def _apply(self, images, direction: str):
        if isinstance(images, np.ndarray):
            batch = numpy_batch(images, self.image_size)
            source, negated = self.tables(direction, "hwc")
            out = np.take(batch.reshape(len(batch), -1), source, axis=1)
            out ^= negated_bytes(negated)
            return out.reshape(images.shape)
        torch = torch_module(images)
        from lie_ray.transforms.quantise import from_bytes, to_bytes

        batch = torch_batch(images, self.image_size)
        levels = to_bytes(batch).reshape(len(batch), -1)
        source, negated = self.tables(direction, "chw")
        if levels.device.type == "cpu":
            out = np.take(levels.contiguous().numpy(), source, axis=1)
            out ^= negated_bytes(negated)
            out = torch.from_numpy(out)
        else:
            table = device_table(self, direction, levels.device)
            out = levels.index_select(1, table["source"]) ^ table["mask"]
        return from_bytes(out.reshape(batch.shape), images.dtype).reshape(images.shape)

    # -- the attack's forward: float ops, so autograd gives the true gradient
    def with_grad(self, images: torch.Tensor, backward: str | None = None) -> torch.Tensor:
        self.backward_mode(backward)
        batch = torch_batch(images, self.image_size)
        if not batch.is_floating_point():
            raise LieRayError("with_grad needs float images in [0, 1]")
        table = device_table(self, "encrypt", batch.device)
        gathered = batch.reshape(len(batch), -1).index_select(1, table["source"])
        out = gathered.where(~table["negated"], 1 - gathered)
        return out.reshape(images.shape)


@lru_cache(maxsize=256)
def _gather_tables(
    transform: GatherTransform, direction: str, layout: str
) -> tuple[np.ndarray, np.ndarray]:
    h, w = transform.image_size
    plan = transform.plan(GatherPlan(h, w))
    source, negated = plan.source.reshape(-1), plan.negated.reshape(-1)
    if direction == "decrypt":  # x[source[i]] = n_i(y[i])  =>  x[k] = n(y[inverse[k]])
        inverse = np.argsort(source, kind="stable")
        source, negated = inverse, negated[inverse]
    if layout == "chw":  # express positions in CHW order, listed in CHW output order
        hwc_of_chw = np.arange(h * w * CHANNELS).reshape(h, w, CHANNELS).transpose(2, 0, 1)
        hwc_of_chw = hwc_of_chw.reshape(-1)
        chw_of_hwc = np.argsort(hwc_of_chw)
        source, negated = chw_of_hwc[source[hwc_of_chw]], negated[hwc_of_chw]
    return np.ascontiguousarray(source), np.ascontiguousarray(negated)


def negated_bytes(negated: np.ndarray) -> np.ndarray:
    """255 - v is v XOR 0xFF on bytes."""
    return negated.astype(np.uint8) * np.uint8(0xFF)


def device_table(transform: GatherTransform, direction: str, device) -> dict[str, Any]:
    """The CHW tables as tensors on ``device`` (cached per transform, direction, device)."""
    import torch

    cache_key = (direction, str(device))
    if cache_key not in transform.device_tables:
        source, negated = transform.tables(direction, "chw")
        transform.device_tables[cache_key] = {
            "source": torch.from_numpy(source).to(device),
            "negated": torch.from_numpy(negated).to(device),
            "mask": torch.from_numpy(negated_bytes(negated)).to(device),
        }
    return transform.device_tables[cache_key]


# ---------------------------------------------------------------- input checks
def numpy_batch(images: np.ndarray, image_size) -> np.ndarray:
    if images.dtype != np.uint8:
        raise LieRayError(
            f"NumPy images must be uint8 NHWC, got dtype {images.dtype}: convert "
            "with (x * 255).round().astype(np.uint8)"
        )
    batch = images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or batch.shape[1:] != (*image_size, CHANNELS):
        raise LieRayError(
            f"expected NHWC images of size {image_size[0]}x{image_size[1]} with "
            f"{CHANNELS} channels, got shape {images.shape}"
        )
    return np.ascontiguousarray(batch)


def torch_module(images):
    torch = sys.modules.get("torch")
    if torch is None or not isinstance(images, torch.Tensor):
        raise LieRayError(
            f"cannot transform a {type(images).__name__}: pass a NumPy uint8 array "
            "(NHWC) or a torch tensor (NCHW)"
        )
    return torch


def torch_batch(images, image_size):
    torch_module(images)
    batch = images[None] if images.ndim == 3 else images
    if batch.ndim != 4 or tuple(batch.shape[1:]) != (CHANNELS, *image_size):
        raise LieRayError(
            f"expected NCHW tensors of size {image_size[0]}x{image_size[1]} with "
            f"{CHANNELS} channels, got shape {tuple(images.shape)}"
        )
    return batch


__all__ = ["Transform", "GatherTransform", "GatherPlan", "FIXED_LABEL"]
