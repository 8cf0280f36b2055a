"""Privacy presets: ``smoke`` (every transform x attack in about a minute on 2 cores) and
``paper`` (the real ITN budget and more keys and images). Plain, non-secret values."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from lie_ray.errors import LieRayError


@dataclass(frozen=True)
class ItnSettings:
    images: int = 50000  # the attacker's own images (as many as --data holds)
    images_per_key: int = 1  # a fresh attacker key per image; smoke shares one among a few
    epochs: int = 50  # as the reference ITN
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 48
    torch_threads: int = 1
    seed: int = 0


@dataclass(frozen=True)
class PrivacySettings:
    block_size: int = 4
    test_images: int = 1000  # the defender's test images every reconstruction is scored on
    kp_keys: int = 20  # keys the smallest-k search runs over
    kp_max_k: int = 16  # pairs offered per key before giving up
    max_probes: int = 8  # chosen-plaintext probes offered before giving up (ELE needs ~6)
    audit_seconds: float = 1.0  # time spent measuring brute-force keys/s, per transform
    gallery_images: int = 8
    itn: ItnSettings = field(default_factory=ItnSettings)


PRIVACY_PRESETS = {
    "paper": PrivacySettings(),
    "smoke": PrivacySettings(
        test_images=256,
        kp_keys=10,
        kp_max_k=8,
        audit_seconds=0.2,
        itn=ItnSettings(images=768, images_per_key=16, epochs=4, width=32),
    ),
}
PRIVACY_PRESETS["family"] = PRIVACY_PRESETS["smoke"]  # the family study's privacy phase
PRIVACY_PRESETS["study"] = PRIVACY_PRESETS["smoke"]
PRIVACY_PRESETS["board"] = PRIVACY_PRESETS["smoke"]


def get_privacy_preset(name: str, block_size: int | None = None) -> PrivacySettings:
    """The preset ``name``, at ``block_size`` when given (the key's)."""
    if name not in PRIVACY_PRESETS:
        raise LieRayError(f"unknown preset {name!r}: choose one of {', '.join(PRIVACY_PRESETS)}")
    preset = PRIVACY_PRESETS[name]
    return preset if block_size is None else dataclasses.replace(preset, block_size=block_size)
