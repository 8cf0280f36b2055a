"""Images as the pipeline holds them (uint8 NHWC), from what library callers hand over.

Shared by ``lie_ray.evaluate`` and ``lie_ray.privacy.attack``: both encrypt bytes, so a float
image must sit on the 8-bit grid. Torch is only touched when the caller passed a tensor, so
this module stays importable where torch is not loaded.
"""

from __future__ import annotations

import sys

import numpy as np

from lie_ray.errors import LieRayError


def as_uint8_images(images) -> np.ndarray:
    """uint8 NHWC, from uint8 NHWC arrays or NCHW tensors (uint8, or floats k / 255)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(images, torch.Tensor):
        tensor = images.detach().cpu()
        if tensor.ndim != 4 or tensor.shape[1] != 3:
            raise LieRayError(
                f"tensor images must be NCHW with 3 channels, got shape {tuple(tensor.shape)}"
            )
        if tensor.is_floating_point():
            levels = torch.round(tensor * 255)
            if (levels - tensor * 255).abs().max() > 1e-3 or levels.min() < 0 or levels.max() > 255:
                raise LieRayError(
                    "float images must be 8-bit levels k / 255 in [0, 1] (the "
                    "pipeline encrypts bytes): pass (x * 255).round() / 255"
                )
            tensor = levels.to(torch.uint8)
        elif tensor.dtype != torch.uint8:
            raise LieRayError(f"tensor images must be uint8 or float, got {tensor.dtype}")
        return np.ascontiguousarray(tensor.permute(0, 2, 3, 1).numpy())
    array = np.asarray(images)
    if array.dtype != np.uint8 or array.ndim != 4 or array.shape[-1] != 3:
        raise LieRayError(
            f"array images must be uint8 NHWC with 3 channels, got "
            f"{array.dtype} {array.shape}: pass a uint8 array or an NCHW tensor"
        )
    return np.ascontiguousarray(array)
