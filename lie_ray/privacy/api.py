"""``lie_ray.privacy.attack``: the privacy attacks of ``lie-ray privacy`` on one transform of
the caller's choosing, with images in and a table out.

The rows are ``suite``'s, as in ``privacy.parquet``: each attack's reconstruction of the
defender's images scored against them (SSIM, PSNR, the share reconstructed exactly), and
whether the defender's key was recovered. The attacker of each row has only what its threat
model gives: the ciphertexts; k known or chosen pairs; or, for the ITN, their own images
encrypted under their own keys (``attacker_images``, never the defender's).

The exact attacks run in this process; the ITN trains here too, or as a Ray Train job with
``ray=`` (the CLI's own job). Its pairs go to the worker, never a key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from lie_ray.data.arrays import as_uint8_images
from lie_ray.errors import LieRayError
from lie_ray.infra import provenance
from lie_ray.keys import FIXED_LABEL, Key, generate_key, load_key
from lie_ray.privacy import targets
from lie_ray.privacy.scoring import score
from lie_ray.privacy.settings import PrivacySettings, get_privacy_preset
from lie_ray.privacy.suite import ATTACKS, SCHEMA, applicable, exact_attacks, row
from lie_ray.transforms import Transform, names, register, transform_class

NEEDS_ATTACKER_IMAGES = {"itn": "needs attacker_images= (the attacker's own plain images)"}


@dataclass(frozen=True)
class Privacy:
    """What ``attack`` gives back: ``results`` has the columns of ``privacy.parquet`` (one row
    per attack), ``reconstructions`` each attack's picture of the images (uint8 NHWC; the
    ciphertext as the transform outputs it), ``record`` what produced them (also in the
    table's metadata)."""

    results: pa.Table
    reconstructions: dict[str, np.ndarray]
    record: dict

    def __repr__(self) -> str:
        lines = [
            f"{'attack':<17} {'threat model':<27} {'k':>3} {'ssim':>6} {'psnr':>6} "
            f"{'exact':>6}  key"
        ]

        def show(v, f):
            return "-" if v is None else format(v, f)

        for r in self.results.to_pylist():
            key = {True: "recovered", False: "not recovered"}.get(r["key_recovered"], "")
            if r["attack"] == "key-space":
                key = (
                    f"2^{r['key_space_log2']:.0f} keys, 10^"
                    f"{r['brute_force_log10_years']:.0f} years at the measured keys/s"
                )
            lines.append(
                f"{r['attack']:<17} {r['threat_model']:<27} {show(r['k'], 'd'):>3} "
                f"{show(r['ssim'], '.3f'):>6} {show(r['psnr'], '.1f'):>6} "
                f"{show(r['exact_share'], '.3f'):>6}  {key}"
            )
        return "\n".join(lines)


def attack(
    transform: str | Transform,
    images,
    *,
    key: str | os.PathLike | Key | None = None,
    attacks: str | Sequence[str] = "all",
    attacker_images=None,
    preset: str = "smoke",
    ray: bool | str = False,
    **settings: Any,
) -> Privacy:
    """Every privacy attack that applies to ``transform``, on the defender's ``images`` (uint8
    NHWC arrays, or NCHW tensors: uint8, or floats k / 255; at least two).

    transform        a registered name (keyed by ``key``'s fixed sub-key), or a ``Transform``
                     object holding the defender's key (its class is registered if it is not)
    key              a master key file or ``lie_ray.keys.Key``; None: a fresh one for this
                     call. The statistics over keys (known-plaintext's k, brute force at
                     M = 2) draw their keys from it (from a fresh one for an object).
    attacks          "all" (every one that applies) or names from ``suite.ATTACKS``
    attacker_images  the attacker's own plain images, for the ITN (left out without them)
    preset           the budgets (``lie_ray.privacy.settings``); ``settings`` override fields
                     (kp_keys=20, itn=ItnSettings(epochs=10), ...)
    ray              train the ITN as a Ray Train job (True: join RAY_ADDRESS or start one;
                     a string: that cluster's address)
    """
    plain = as_uint8_images(images)
    if len(plain) < 2:
        raise LieRayError(
            f"{len(plain)} image(s): pass at least two (the known-plaintext "
            "attack recovers the key from the first and decrypts the rest)"
        )
    defender, master, name, chosen = defender_and_settings(transform, key, preset, settings)
    own = None if attacker_images is None else as_uint8_images(attacker_images)
    wanted, not_run = choose_attacks(attacks, name, own is not None)
    rows, found = exact_attacks(name, defender, master, plain, plain, chosen, wanted)
    if "itn" in wanted:
        itn_settings = dataclasses.replace(chosen.itn, images=len(own))
        chosen = dataclasses.replace(chosen, itn=itn_settings)
        found["itn"], seconds = inversion(name, defender, own, plain, chosen, ray)
        rows.append(row(name, "itn", defender, k=0, seconds=seconds, **score(found["itn"], plain)))
    record = {
        "kind": "api-privacy",
        "transform": {"name": name, "block_size": defender.block_size, "variant": defender.variant},
        "settings": dataclasses.asdict(chosen),
        "attacks": [r["attack"] for r in rows],
        "not_run": not_run,
        "key_fingerprint": master.fingerprint,
        "transform_fingerprint": defender.fingerprint,
        "data": {
            "images": len(plain),
            "sha256": digest(plain),
            "attacker_images": 0 if own is None else len(own),
            "attacker_sha256": "" if own is None else digest(own),
        },
        "code": provenance.code(),
    }
    table = provenance.with_record(pa.Table.from_pylist(rows, schema=SCHEMA), record)
    return Privacy(table, found, record)


def defender_and_settings(
    transform, key, preset: str, overrides: dict
) -> tuple[Transform, Key, str, PrivacySettings]:
    """The defender's keyed transform, the master the statistics draw keys from, the
    transform's registered name and the settings (at the defender's block size)."""
    base = get_privacy_preset(preset)
    allowed = {f.name for f in dataclasses.fields(PrivacySettings)} - {
        "block_size",
        "test_images",
        "gallery_images",
    }
    unknown = sorted(set(overrides) - allowed)
    if unknown:
        raise LieRayError(
            f"setting(s) {unknown} are not taken here: pass fields of "
            "lie_ray.privacy.settings.PrivacySettings but block_size (the key's "
            "or the transform's), test_images and gallery_images (every image "
            "given is attacked)"
        )
    if isinstance(transform, Transform):
        if key is not None:
            raise LieRayError("a Transform object holds its own key: pass key=None")
        name = type(transform).name
        if name not in names():
            register(type(transform))
        block_size = (
            transform.block_size if transform_class(name).block_size_from_key else base.block_size
        )
        chosen = dataclasses.replace(base, block_size=block_size, **overrides)
        if targets.block_size_for(name, chosen.block_size) != transform.block_size:
            raise LieRayError(
                f"{name} at block size {transform.block_size}: the privacy "
                f"attacks run it at its papers' block sizes "
                f"{transform_class(name).paper_block_sizes}; build it at one"
            )
        return transform, generate_key(chosen.block_size), name, chosen
    if isinstance(transform, type):
        raise LieRayError(
            f"transform {transform.__name__} is a class: pass an instance, or "
            "its registered name with key="
        )
    if not isinstance(transform, str) or transform not in names():
        raise LieRayError(
            f"unknown transform {transform!r}: choose from {', '.join(names())} "
            "or pass a Transform object"
        )
    master = key if isinstance(key, Key) else generate_key() if key is None else load_key(key)
    master.require_master(
        "the privacy attacks derive several keys from a master key",
        fix="pass one made by 'lie-ray keygen', or key=None",
    )
    chosen = dataclasses.replace(base, block_size=master.block_size, **overrides)
    return (
        targets.build(transform, master, chosen.block_size, FIXED_LABEL),
        master,
        transform,
        chosen,
    )


def choose_attacks(
    attacks, name: str, has_attacker_images: bool
) -> tuple[set[str], dict[str, str]]:
    """The attacks to run, and why any other will not."""
    skipped = {a: f"{name}: {why}" for a, why in applicable(name).items()}
    if not has_attacker_images:
        skipped.update(NEEDS_ATTACKER_IMAGES)
    if attacks == "all":
        return set(ATTACKS) - set(skipped), skipped
    if isinstance(attacks, str):
        raise LieRayError(
            f"attacks={attacks!r}: pass 'all' or a list of names from {', '.join(ATTACKS)}"
        )
    unknown = [a for a in attacks if a not in ATTACKS]
    if unknown:
        raise LieRayError(f"unknown privacy attack(s) {unknown}: choose from {', '.join(ATTACKS)}")
    refused = {a: skipped[a] for a in attacks if a in skipped}
    if refused:
        raise LieRayError(
            "; ".join(
                f"{a} {why}" if a in NEEDS_ATTACKER_IMAGES else f"{a} does not apply to {why}"
                for a, why in refused.items()
            )
        )
    return set(attacks), {a: why for a, why in skipped.items() if a not in attacks}


def inversion(
    name: str,
    defender: Transform,
    own: np.ndarray,
    plain: np.ndarray,
    settings: PrivacySettings,
    ray: bool | str,
) -> tuple[np.ndarray, float]:
    """The ITN trained on the attacker's own images and keys, then run on the defender's
    ciphertexts: here, or as the CLI's Ray Train job."""
    from lie_ray.privacy import itn

    encrypted = defender.encrypt(plain)
    if not ray:
        model, seconds = itn.train_here(name, own, settings.block_size, settings.itn)
        return itn.invert(model, encrypted), seconds
    import ray as ray_module

    from lie_ray.infra.session import ray_session

    if isinstance(ray, str) and not ray_module.is_initialized():
        ray_module.init(address=ray)
    with ray_session(), tempfile.TemporaryDirectory(prefix="lie_ray_itn_") as storage:
        models, metrics = itn.train_itns([name], own, settings.block_size, settings.itn, storage)
    return itn.invert(models[name], encrypted), metrics["seconds"]


def digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
