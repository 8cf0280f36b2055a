"""The privacy section of ``report.md``, and ``privacy.md``, from ``privacy.parquet``.

Rebuildable from the table alone (no Ray, no key). The SIA-GAN anchor is a published LPIPS
(lower = better reconstruction), beside our SSIM (higher = better): a different metric, given
for orientation, not compared number to number. The job draws the reconstruction gallery
(``lie_ray.privacy.gallery``); the section links it when it is there.
"""

from __future__ import annotations

import math
from pathlib import Path

from lie_ray.infra import atomic
from lie_ray.infra.tables import read_privacy
from lie_ray.privacy.gallery import ATTACK_ORDER, GALLERY
from lie_ray.report.markdown import cell, markdown_table
from lie_ray.report.provenance import section as provenance_section
from lie_ray.transforms import REGISTRY

SECTION = "privacy.md"
DIGITS = 4  # the privacy tables' floats (LPIPS) carry four decimals


def sia_gan_lpips(name: str) -> float | None:
    """SIA-GAN's published LPIPS for transform ``name`` (MADONOKOUKI/SIA-GAN: CIFAR-10,
    same-dataset natural images, with adaptation network), a class attribute of the transform;
    None for a transform it did not attack, or one this version does not register."""
    return REGISTRY[name].sia_gan_lpips if name in REGISTRY else None


def section(directory: str | Path) -> str:
    """Markdown for the privacy results in ``directory``; empty when there are none."""
    table = read_privacy(Path(directory))
    if table is None:
        return ""
    rows = table.to_pylist()
    rows.sort(
        key=lambda r: (
            r["transform"],
            ATTACK_ORDER.index(r["attack"]) if r["attack"] in ATTACK_ORDER else 99,
        )
    )
    header = [
        "transform",
        "attack",
        "threat model",
        "k",
        "SSIM (95% CI)",
        "PSNR dB (median)",
        "exact images",
        "key recovered",
        "SIA-GAN LPIPS",
    ]
    body = [
        [
            r["transform"],
            r["attack"],
            r["threat_model"],
            cell(r["k"], DIGITS),
            ssim_cell(r),
            psnr_cell(r["psnr"]),
            exact_cell(r.get("exact_share")),
            cell(r["key_recovered"], DIGITS),
            cell(sia_gan_lpips(r["transform"]), DIGITS) if r["attack"] == "itn" else "-",
        ]
        for r in rows
        if r["attack"] != "key-space"
    ]
    audit = [
        [
            r["transform"],
            f"{r['key_space_log2']:.1f}",
            f"{r['keys_per_second']:.0f}",
            years_cell(r["brute_force_log10_years"]),
        ]
        for r in rows
        if r["attack"] == "key-space"
    ]
    text = (
        "## Privacy\n\n"
        "How well each attack reconstructs the defender's test images (SSIM and PSNR against "
        "the true plain images, per image: SSIM's mean with its 95% interval, PSNR's median, "
        "and the share of images reconstructed exactly, 'all' only when every one is). k: "
        "image pairs "
        "(known-plaintext: the smallest k that recovered the whole key for every key tried) "
        "or probes (chosen-plaintext) the attacker needed; 0 for ciphertext-only attacks. "
        "`ciphertext` scores the encrypted image itself. SIA-GAN's published LPIPS (lower "
        "= better reconstruction, a different metric) is the anchor for the learned "
        "attack.\n\n" + markdown_table(header, body) + "\nKey-space audit (brute force with "
        "one known pair, at this machine's measured rate):\n\n"
        + markdown_table(["transform", "log2 keys", "keys/s", "expected time"], audit)
        + (f"\n![reconstructions]({GALLERY})\n" if (Path(directory) / GALLERY).is_file() else "")
    )
    return text


def write_privacy(directory: str | Path) -> Path:
    """``privacy.md``: the section under its own title, after the privacy job has run."""
    target = Path(directory) / SECTION
    with atomic.staged_file(target) as staging:
        staging.write_text(
            "# Privacy attacks\n\n"
            + section(directory).split("\n", 2)[2]
            + provenance_section(directory, "privacy.parquet"),
            encoding="utf-8",
        )
    return target


def ssim_cell(r: dict) -> str:
    if r["ssim"] is None:
        return "-"
    if r["ssim_low"] is None or math.isnan(r["ssim_low"]):
        return f"{r['ssim']:.3f}"
    return f"{r['ssim']:.3f} [{r['ssim_low']:.3f}, {r['ssim_high']:.3f}]"


def psnr_cell(value) -> str:
    """The median; infinite only when at least half the images are exact (the next column
    says how many)."""
    if value is None or math.isnan(value):
        return "-"
    return "inf" if math.isinf(value) else f"{value:.1f}"


def exact_cell(share) -> str:
    """'all' only when every image is exact: one exact image in a hundred is '1%'."""
    if share is None or math.isnan(share):
        return "-"
    if share == 1:
        return "all"
    return "none" if share == 0 else f"{100 * share:.0f}%"


def years_cell(log10_years: float) -> str:
    if log10_years < math.log10(1 / (365.25 * 24 * 3600)):
        return "under a second"
    if log10_years < 0:
        return f"{10**log10_years * 365.25 * 24 * 3600:.3g} s"
    return f"10^{log10_years:.0f} years"
