"""``lie-ray privacy``: every attack against every chosen transform, one table.

Per transform, under the defender's key (the sweep's ``fixed`` sub-key of the master):

    ciphertext        no attack: the encrypted image itself, scored as a reconstruction
    known-plaintext   exact key recovery from k pairs (smallest k over several keys), then the
                      test set decrypted with the recovered key
    chosen-plaintext  the same from crafted noise probes, counted
    fr-basic          ciphertext-only folding v -> min(v, 255 - v)
    block-mean        ciphertext-only block statistics (Shuffle: block means survive)
    brute-force       NP/FFX at M = 2: every reference key against one known pair
    itn               learned inversion trained on the attacker's own images and keys (Ray Train)
    key-space         log2 of the key space and the brute-force time at the measured keys/s

Writes ``OUT/privacy.parquet`` (one row per transform x attack) and ``OUT/privacy_gallery.png``;
whoever runs the job then renders ``OUT/privacy.md`` from the table (``lie_ray.report``, a layer
above the jobs). Keys appear only as fingerprints.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

from lie_ray.infra import atomic, provenance
from lie_ray.data.cifar import data_record, load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import FIXED_LABEL, Key, generate_key
from lie_ray.privacy import brute_force, chosen_plaintext, keyspace, known_plaintext, targets
from lie_ray.privacy.ciphertext_only import block_mean, fr_basic
from lie_ray.privacy.scoring import score
from lie_ray.privacy.settings import PrivacySettings
from lie_ray.infra.storage import join
from lie_ray.transforms import transform_class

log = logging.getLogger("lie_ray")

SCHEMA = pa.schema([
    ("transform", pa.string()), ("block_size", pa.int64()), ("attack", pa.string()),
    ("threat_model", pa.string()), ("k", pa.int64()), ("n", pa.int64()),
    ("ssim", pa.float64()), ("ssim_low", pa.float64()), ("ssim_high", pa.float64()),
    # PSNR: median and quartiles over images; exact_share: images reconstructed exactly.
    ("psnr", pa.float64()), ("psnr_low", pa.float64()), ("psnr_high", pa.float64()),
    ("exact_share", pa.float64()),
    ("key_recovered", pa.bool_()), ("keys_tested", pa.int64()),
    ("key_space_log2", pa.float64()), ("keys_per_second", pa.float64()),
    ("brute_force_log10_years", pa.float64()), ("seconds", pa.float64()),
    ("key_fingerprint", pa.string()),
])
THREATS = {"ciphertext": "none", "known-plaintext": "known-plaintext",
           "chosen-plaintext": "chosen-plaintext", "brute-force": "known-plaintext",
           "fr-basic": "ciphertext-only", "block-mean": "ciphertext-only",
           "itn": "ciphertext-only + own data", "key-space": "brute force"}


def run_privacy(data_dir: str | Path, key: Key, out_dir: str | Path, names: list[str],
                settings: PrivacySettings, storage: str | None = None) -> pa.Table:
    """Run every attack on every transform in ``names``; write the table and the gallery."""
    out = Path(out_dir).resolve()
    test = load_split(data_dir, "test")
    attacker = load_split(data_dir, "train").images[:settings.itn.images]
    plain = test.images[:settings.test_images]
    rows, gallery, encrypted_sets = [], [], {}
    for name in targets.check_names(names):
        started = time.monotonic()
        defender = targets.build(name, key, settings.block_size, FIXED_LABEL)
        encrypted = defender.encrypt(plain)
        found = {"ciphertext": encrypted, "fr-basic": fr_basic(encrypted)}
        rows += [row(name, settings, "ciphertext", defender, k=0, **score(encrypted, plain)),
                 row(name, settings, "fr-basic", defender, k=0, **score(found["fr-basic"], plain))]
        if transform_class(name).keeps_block_stats:
            found["block-mean"] = block_mean(encrypted, defender.block_size)
            rows.append(row(name, settings, "block-mean", defender, k=0,
                            **score(found["block-mean"], plain)))
        if known_plaintext.recoverable(name):
            kp_row, found["known-plaintext"] = known_plaintext_attack(
                name, key, test.images, plain, encrypted, settings)
            cp_row, found["chosen-plaintext"] = chosen_plaintext_attack(
                name, defender, plain, encrypted, settings)
            rows += [kp_row, cp_row]
        if transform_class(name).brute_forceable:
            rows.append(brute_force_row(name, key, plain, settings))
        rows.append(key_space_row(name, defender, plain, settings))
        gallery.append((name, plain[:settings.gallery_images], found))
        encrypted_sets[name] = (defender, encrypted)
        log.info("exact privacy attacks on %s done in %.1f s", name, time.monotonic() - started)
    itn_storage = join(storage or str(out / "ray"), "privacy")  # beside Tune's, under --storage
    rows += itn_rows(encrypted_sets, attacker, plain, settings, itn_storage,
                     {name: found for name, _, found in gallery})
    gallery = [(name, images, {a: v[:settings.gallery_images] for a, v in found.items()})
               for name, images, found in gallery]
    table = provenance.with_record(pa.Table.from_pylist(rows, schema=SCHEMA), {
        "kind": "privacy", "settings": dataclasses.asdict(settings), "transforms": names,
        "key_fingerprint": key.fingerprint, "data": data_record(data_dir),
        "code": provenance.code()})
    write_outputs(table, gallery, out)
    return table


def resolve_privacy(key_path: Path, preset: str, data: Path, transforms: str | None
                    ) -> tuple[Key, list[str], PrivacySettings, Path]:
    """Every check on the user's input, before Ray starts: the key (its block size is the
    attacks'), the preset, the data and the transform names."""
    from lie_ray.data.cifar import check_dataset
    from lie_ray.keys import load_key
    from lie_ray.privacy.settings import get_privacy_preset

    key = load_key(key_path)
    key.require_master("the privacy attacks derive many keys (one per transform, several per "
                       "attack) from a master key", fix="pass one made by 'lie-ray keygen'")
    settings = get_privacy_preset(preset, key.block_size)
    names = targets.check_names([n.strip() for n in transforms.split(",") if n.strip()]
                                if transforms else targets.names())
    if not names:
        raise LieRayError("--transforms names no transform: pass e.g. --transforms le,shuffle")
    return key, names, settings, check_dataset(data)


def row(name: str, settings: PrivacySettings, attack: str, target, **values) -> dict:
    return {"transform": name, "block_size": target.block_size, "attack": attack,
            "threat_model": THREATS[attack], "key_fingerprint": target.fingerprint, **values}


def known_plaintext_attack(name, key, pool, plain, encrypted, settings):
    """Smallest k over ``kp_keys`` keys of the master (each on its own random test images),
    then the defender's key recovered from that many pairs and the test set decrypted."""
    started = time.monotonic()
    ks, exact = [], []
    for i in range(settings.kp_keys):  # one key per iteration: the statistic is over keys
        target = targets.build(name, key, settings.block_size, f"privacy/known-plaintext/{i}")
        chosen = pool[np.random.default_rng(i).permutation(len(pool))[:settings.kp_max_k]]
        k, arrays = known_plaintext.smallest_k(name, chosen, target.encrypt(chosen),
                                               settings.block_size)
        ks.append(k)
        exact.append(known_plaintext.equivalent(name, arrays, target))
    k_all = None if None in ks else max(ks)
    log.info("known-plaintext %s: k per key %s, exact %d/%d", name, ks, sum(exact), len(exact))
    pairs = k_all or settings.kp_max_k  # the defender's own first pairs, then the rest decrypted
    defender = targets.build(name, key, settings.block_size, FIXED_LABEL)
    _, arrays = known_plaintext.smallest_k(name, plain[:pairs], encrypted[:pairs],
                                           settings.block_size)
    recovered = targets.from_arrays(name, arrays, settings.block_size).decrypt_any(encrypted)
    values = score(recovered[pairs:], plain[pairs:])
    return row(name, settings, "known-plaintext", defender, k=k_all,
               key_recovered=all(exact) and known_plaintext.equivalent(name, arrays, defender),
               keys_tested=len(exact),
               seconds=time.monotonic() - started, **values), recovered


def chosen_plaintext_attack(name, defender, plain, encrypted, settings):
    started = time.monotonic()
    probes = chosen_plaintext.crafted_probes(name, settings.max_probes, seed=0,
                                             shape=plain.shape[1:])
    k, arrays = known_plaintext.smallest_k(name, probes, defender.encrypt(probes),
                                           settings.block_size)
    recovered = targets.from_arrays(name, arrays, settings.block_size).decrypt_any(encrypted)
    return row(name, settings, "chosen-plaintext", defender, k=k,
               key_recovered=known_plaintext.equivalent(name, arrays, defender),
               keys_tested=1, seconds=time.monotonic() - started,
               **score(recovered, plain)), recovered


def brute_force_row(name, key, plain, settings) -> dict:
    """NP/FFX at M = 2: all 792 reference keys (with what is public of the rest) against one
    known pair, then the test set decrypted with the survivor (when exactly one survives)."""
    started = time.monotonic()
    defender = targets.build(name, key, brute_force.BLOCK_SIZE, FIXED_LABEL)
    encrypted = defender.encrypt(plain)
    found, tried, _ = brute_force.brute_force(name, brute_force.BLOCK_SIZE, plain[:1],
                                              encrypted[:1])
    values = {}
    if len(found) == 1:
        recovered = targets.from_arrays(name, found[0], brute_force.BLOCK_SIZE)
        values = score(recovered.decrypt_any(encrypted[1:]), plain[1:])
    return row(name, settings, "brute-force", defender, k=1, keys_tested=tried,
               key_recovered=len(found) == 1 and known_plaintext.equivalent(
                   name, found[0], defender),
               seconds=time.monotonic() - started, **values)


def itn_rows(encrypted_sets: dict, attacker_images, plain, settings, storage, found) -> list:
    """Train every transform's ITN in one Ray Train job, then invert the defender's images."""
    from lie_ray.privacy import itn

    models, metrics = itn.train_itns(list(encrypted_sets), attacker_images, settings.block_size,
                                     settings.itn, storage)
    rows = []
    for name, (defender, encrypted) in encrypted_sets.items():
        found[name]["itn"] = itn.invert(models[name], encrypted)
        rows.append(row(name, settings, "itn", defender, k=0, seconds=metrics["seconds"],
                        **score(found[name]["itn"], plain)))
    return rows


def key_space_row(name, defender, plain, settings) -> dict:
    """Measure keys/s of a known-plaintext brute force: build a candidate, encrypt, compare."""
    master, image, observed = generate_key(settings.block_size), plain[:1], defender.encrypt(
        plain[:1])

    def try_key(i: int) -> bool:
        candidate = targets.build(name, master, settings.block_size, f"audit/{i}")
        return keyspace.matches(candidate.encrypt(image), observed)

    rate = keyspace.keys_per_second(try_key, settings.audit_seconds)
    return row(name, settings, "key-space", defender, key_space_log2=defender.key_space_log2,
               keys_per_second=rate, brute_force_log10_years=keyspace.brute_force_log10_years(
                   defender.key_space_log2, rate))


def write_outputs(table: pa.Table, gallery: list, out: Path) -> None:
    from lie_ray.privacy.gallery import GALLERY, write_gallery

    out.mkdir(parents=True, exist_ok=True)
    atomic.write_parquet(table, out / "privacy.parquet")
    write_gallery(gallery, out / GALLERY)
