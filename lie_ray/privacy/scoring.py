"""How close is a reconstruction to the true plain image: SSIM and PSNR, per image.

Both come from torchmetrics (Gaussian-window SSIM, 11x11, sigma 1.5, on [0, 1] images), never
from code of our own. SSIM is summarised as a mean with a 95% Student-t interval over images,
so a table cell says how sure it is. PSNR is infinite for an exact image, so its mean would be
infinite as soon as one image of a hundred is: it is summarised as the median with its
quartiles, beside the share of images reconstructed exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats
from torchmetrics.functional.image import (
    peak_signal_noise_ratio,
    structural_similarity_index_measure,
)


@dataclass(frozen=True)
class Summary:
    """Mean of a per-image score with its 95% interval (NaN bounds when n < 2)."""

    mean: float
    low: float
    high: float
    n: int


def as_unit_nchw(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """NHWC uint8 (or float in [0, 1]) NumPy images -> float32 NCHW tensor in [0, 1]."""
    if isinstance(images, torch.Tensor):
        return images.float()
    array = np.asarray(images)
    scaled = (
        array.astype(np.float32) / 255.0 if array.dtype == np.uint8 else array.astype(np.float32)
    )
    return torch.from_numpy(np.clip(scaled, 0.0, 1.0)).permute(0, 3, 1, 2).contiguous()


def ssim_per_image(reconstructed, plain) -> np.ndarray:
    """SSIM of each reconstruction against its plain image (1 = identical)."""
    scores = structural_similarity_index_measure(
        as_unit_nchw(reconstructed), as_unit_nchw(plain), data_range=1.0, reduction="none"
    )
    return scores.double().numpy()


def psnr_per_image(reconstructed, plain) -> np.ndarray:
    """PSNR in dB of each reconstruction (inf where it equals the plain image exactly)."""
    scores = peak_signal_noise_ratio(
        as_unit_nchw(reconstructed),
        as_unit_nchw(plain),
        data_range=1.0,
        reduction="none",
        dim=(1, 2, 3),
    )
    return scores.double().numpy()


def summarise(values: np.ndarray) -> Summary:
    """Mean and 95% Student-t interval; an all-infinite PSNR stays infinite."""
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    mean = float(values.mean()) if n else math.nan
    if n < 2 or not np.isfinite(values).all():
        return Summary(
            mean, mean if math.isinf(mean) else math.nan, mean if math.isinf(mean) else math.nan, n
        )
    half = float(stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n))
    return Summary(mean, mean - half, mean + half, n)


def lower_quantile(values: np.ndarray, q: float) -> float:
    """An observed value (never an average of two), so a median of [30 dB, inf] is 30 dB."""
    return float(np.quantile(values, q, method="inverted_cdf")) if values.size else math.nan


def score(reconstructed, plain) -> dict[str, float | int]:
    """The table columns for one attack: ssim with its interval; psnr, the median with its
    quartiles; exact_share, the images reconstructed exactly; n."""
    ssim = summarise(ssim_per_image(reconstructed, plain))
    psnr = psnr_per_image(reconstructed, plain)
    return {
        "n": ssim.n,
        "ssim": ssim.mean,
        "ssim_low": ssim.low,
        "ssim_high": ssim.high,
        "psnr": lower_quantile(psnr, 0.5),
        "psnr_low": lower_quantile(psnr, 0.25),
        "psnr_high": lower_quantile(psnr, 0.75),
        "exact_share": float(np.isinf(psnr).mean()) if psnr.size else math.nan,
    }
