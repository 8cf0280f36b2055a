"""``lie-ray privacy``: every attack against every chosen transform, one table.

Per transform, under the defender's key (the sweep's ``fixed`` sub-key of the master), the
exact attacks of ``suite`` (ciphertext, fr-basic, block-mean, known- and chosen-plaintext,
brute-force, key-space), then one Ray Train job training every transform's ITN on the
attacker's own images and keys.

Writes ``OUT/privacy.parquet`` (one row per transform x attack) and ``OUT/privacy_gallery.png``;
whoever runs the job then renders ``OUT/privacy.md`` from the table (``lie_ray.report``, a layer
above the jobs). Keys appear only as fingerprints.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import pyarrow as pa

from lie_ray.data.cifar import data_record, load_split
from lie_ray.infra import atomic, provenance
from lie_ray.infra.storage import join
from lie_ray.keys import FIXED_LABEL, Key
from lie_ray.privacy import targets
from lie_ray.privacy.scoring import score
from lie_ray.privacy.settings import PrivacySettings
from lie_ray.privacy.suite import ATTACKS, SCHEMA, applicable, exact_attacks, row

log = logging.getLogger("lie_ray")


def run_privacy(
    data_dir: str | Path,
    key: Key,
    out_dir: str | Path,
    names: list[str],
    settings: PrivacySettings,
    storage: str | None = None,
) -> pa.Table:
    """Run every attack on every transform in ``names``; write the table and the gallery."""
    out = Path(out_dir).resolve()
    test = load_split(data_dir, "test")
    attacker = load_split(data_dir, "train").images[: settings.itn.images]
    plain = test.images[: settings.test_images]
    rows, gallery, encrypted_sets = [], [], {}
    for name in targets.check_names(names):
        started = time.monotonic()
        defender = targets.build(name, key, settings.block_size, FIXED_LABEL)
        wanted = set(ATTACKS) - {"itn"} - set(applicable(name))
        found_rows, found = exact_attacks(name, defender, key, plain, test.images, settings, wanted)
        rows += found_rows
        gallery.append((name, plain[: settings.gallery_images], found))
        encrypted_sets[name] = (defender, found["ciphertext"])
        log.info("exact privacy attacks on %s done in %.1f s", name, time.monotonic() - started)
    itn_storage = join(storage or str(out / "ray"), "privacy")  # beside Tune's, under --storage
    rows += itn_rows(
        encrypted_sets,
        attacker,
        plain,
        settings,
        itn_storage,
        {name: found for name, _, found in gallery},
    )
    gallery = [
        (name, images, {a: v[: settings.gallery_images] for a, v in found.items()})
        for name, images, found in gallery
    ]
    table = provenance.with_record(
        pa.Table.from_pylist(rows, schema=SCHEMA),
        {
            "kind": "privacy",
            "settings": dataclasses.asdict(settings),
            "transforms": names,
            "key_fingerprint": key.fingerprint,
            "data": data_record(data_dir),
            "code": provenance.code(),
        },
    )
    write_outputs(table, gallery, out)
    return table


def resolve_privacy(
    key_path: Path, preset: str, data: Path, transforms: str | None
) -> tuple[Key, list[str], PrivacySettings, Path]:
    """Every check on the user's input, before Ray starts: the key (its block size is the
    attacks'), the preset, the data and the transform names."""
    from lie_ray.data.cifar import check_dataset
    from lie_ray.keys import load_key
    from lie_ray.privacy.settings import get_privacy_preset

    key = load_key(key_path)
    key.require_master(
        "the privacy attacks derive many keys (one per transform, several per "
        "attack) from a master key",
        fix="pass one made by 'lie-ray keygen'",
    )
    settings = get_privacy_preset(preset, key.block_size)
    return key, targets.chosen(transforms), settings, check_dataset(data)


def itn_rows(encrypted_sets: dict, attacker_images, plain, settings, storage, found) -> list:
    """Train every transform's ITN in one Ray Train job, then invert the defender's images."""
    from lie_ray.privacy import itn

    models, metrics = itn.train_itns(
        list(encrypted_sets), attacker_images, settings.block_size, settings.itn, storage
    )
    rows = []
    for name, (defender, encrypted) in encrypted_sets.items():
        found[name]["itn"] = itn.invert(models[name], encrypted)
        rows.append(
            row(
                name,
                "itn",
                defender,
                k=0,
                seconds=metrics["seconds"],
                **score(found[name]["itn"], plain),
            )
        )
    return rows


def write_outputs(table: pa.Table, gallery: list, out: Path) -> None:
    from lie_ray.privacy.gallery import GALLERY, write_gallery

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_parquet(table, out / "privacy.parquet")
    write_gallery(gallery, out / GALLERY)
