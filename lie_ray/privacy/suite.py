"""Every exact attack on one keyed transform: what ``lie-ray privacy`` (``run``) and
``lie_ray.privacy.attack`` (``api``) share, so a row means the same from either.

    ciphertext        no attack: the encrypted image itself, scored as a reconstruction
    fr-basic          ciphertext-only folding v -> min(v, 255 - v)
    block-mean        ciphertext-only block statistics (Shuffle: block means survive)
    known-plaintext   exact key recovery from k pairs (smallest k over several keys), then the
                      defender's images decrypted with the key recovered from their first k
    chosen-plaintext  the same from crafted noise probes, counted
    brute-force       NP/FFX at M = 2: every reference key against one known pair
    key-space         log2 of the key space and the brute-force time at the measured keys/s

The learned inversion (``itn``) is trained apart, on the attacker's own images. ``master`` is
the key the statistics over keys draw their keys from (a sub-key per label); the defender's
transform is passed whole, so an object built outside lie_ray is attacked as it is. Keys
appear in rows only as fingerprints.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pyarrow as pa

from lie_ray.keys import FIXED_LABEL, Key, generate_key
from lie_ray.privacy import brute_force, chosen_plaintext, keyspace, known_plaintext, targets
from lie_ray.privacy.ciphertext_only import block_mean, fr_basic
from lie_ray.privacy.scoring import score
from lie_ray.privacy.settings import PrivacySettings
from lie_ray.transforms import Transform, transform_class

log = logging.getLogger("lie_ray")

SCHEMA = pa.schema(
    [
        ("transform", pa.string()),
        ("block_size", pa.int64()),
        ("attack", pa.string()),
        ("threat_model", pa.string()),
        ("k", pa.int64()),
        ("n", pa.int64()),
        ("ssim", pa.float64()),
        ("ssim_low", pa.float64()),
        ("ssim_high", pa.float64()),
        # PSNR: median and quartiles over images; exact_share: images reconstructed exactly.
        ("psnr", pa.float64()),
        ("psnr_low", pa.float64()),
        ("psnr_high", pa.float64()),
        ("exact_share", pa.float64()),
        ("key_recovered", pa.bool_()),
        ("keys_tested", pa.int64()),
        ("key_space_log2", pa.float64()),
        ("keys_per_second", pa.float64()),
        ("brute_force_log10_years", pa.float64()),
        ("seconds", pa.float64()),
        ("key_fingerprint", pa.string()),
    ]
)
THREATS = {
    "ciphertext": "none",
    "known-plaintext": "known-plaintext",
    "chosen-plaintext": "chosen-plaintext",
    "brute-force": "known-plaintext",
    "fr-basic": "ciphertext-only",
    "block-mean": "ciphertext-only",
    "itn": "ciphertext-only + own data",
    "key-space": "brute force",
}
ATTACKS = tuple(THREATS)


def applicable(name: str) -> dict[str, str]:
    """The attacks that do not apply to transform ``name``, each with why."""
    cls = transform_class(name)
    why = {}
    if not cls.keeps_block_stats:
        why["block-mean"] = "its values leave their block"
    if not known_plaintext.recoverable(name):
        why["known-plaintext"] = why["chosen-plaintext"] = "it has no known-plaintext recovery"
    if not cls.brute_forceable:
        why["brute-force"] = "its key per block is too large to enumerate"
    return why


def exact_attacks(
    name: str,
    defender: Transform,
    master: Key,
    plain: np.ndarray,
    pool: np.ndarray,
    settings: PrivacySettings,
    wanted: set[str],
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The rows of every wanted exact attack on ``defender`` (transform ``name``) over its
    images ``plain``, and each attack's reconstruction of them; ``pool`` holds the images the
    known-plaintext statistic over keys draws its pairs from."""
    encrypted = defender.encrypt(plain)
    rows, found = [], {}
    if "ciphertext" in wanted:
        found["ciphertext"] = encrypted
        rows.append(row(name, "ciphertext", defender, k=0, **score(encrypted, plain)))
    if "fr-basic" in wanted:
        found["fr-basic"] = fr_basic(encrypted)
        rows.append(row(name, "fr-basic", defender, k=0, **score(found["fr-basic"], plain)))
    if "block-mean" in wanted:
        found["block-mean"] = block_mean(encrypted, defender.block_size)
        rows.append(row(name, "block-mean", defender, k=0, **score(found["block-mean"], plain)))
    if "known-plaintext" in wanted:
        kp_row, found["known-plaintext"] = known_plaintext_attack(
            name, defender, master, pool, plain, encrypted, settings
        )
        rows.append(kp_row)
    if "chosen-plaintext" in wanted:
        cp_row, found["chosen-plaintext"] = chosen_plaintext_attack(
            name, defender, plain, encrypted, settings
        )
        rows.append(cp_row)
    if "brute-force" in wanted:
        rows.append(brute_force_row(name, master, plain))
    if "key-space" in wanted:
        rows.append(key_space_row(name, defender, plain, settings))
    return rows, found


def row(name: str, attack: str, target: Transform, **values) -> dict:
    return {
        "transform": name,
        "block_size": target.block_size,
        "attack": attack,
        "threat_model": THREATS[attack],
        "key_fingerprint": target.fingerprint,
        **values,
    }


def known_plaintext_attack(name, defender, master, pool, plain, encrypted, settings):
    """Smallest k over ``kp_keys`` sub-keys of ``master`` (each on its own random images of
    ``pool``), then the defender's key recovered from that many of its pairs and the rest of
    its images decrypted."""
    started = time.monotonic()
    ks, exact = [], []
    for i in range(settings.kp_keys):  # one key per iteration: the statistic is over keys
        target = targets.build(name, master, defender.block_size, f"privacy/known-plaintext/{i}")
        chosen = pool[np.random.default_rng(i).permutation(len(pool))[: settings.kp_max_k]]
        k, arrays = known_plaintext.smallest_k(
            name, chosen, target.encrypt(chosen), defender.block_size
        )
        ks.append(k)
        exact.append(known_plaintext.equivalent(name, arrays, target))
    k_all = None if None in ks else max(ks)
    log.debug("known-plaintext %s: k per key %s, exact %d/%d", name, ks, sum(exact), len(exact))
    pairs = min(k_all or settings.kp_max_k, len(plain) - 1)
    _, arrays = known_plaintext.smallest_k(
        name, plain[:pairs], encrypted[:pairs], defender.block_size
    )
    recovered = targets.from_arrays(name, arrays, defender.block_size).decrypt_any(encrypted)
    values = score(recovered[pairs:], plain[pairs:])
    return row(
        name,
        "known-plaintext",
        defender,
        k=k_all,
        key_recovered=all(exact) and known_plaintext.equivalent(name, arrays, defender),
        keys_tested=len(exact),
        seconds=time.monotonic() - started,
        **values,
    ), recovered


def chosen_plaintext_attack(name, defender, plain, encrypted, settings):
    started = time.monotonic()
    probes = chosen_plaintext.crafted_probes(
        name, settings.max_probes, seed=0, shape=plain.shape[1:]
    )
    k, arrays = known_plaintext.smallest_k(
        name, probes, defender.encrypt(probes), defender.block_size
    )
    recovered = targets.from_arrays(name, arrays, defender.block_size).decrypt_any(encrypted)
    return row(
        name,
        "chosen-plaintext",
        defender,
        k=k,
        key_recovered=known_plaintext.equivalent(name, arrays, defender),
        keys_tested=1,
        seconds=time.monotonic() - started,
        **score(recovered, plain),
    ), recovered


def brute_force_row(name, master, plain) -> dict:
    """NP/FFX at M = 2: all 792 reference keys (with what is public of the rest) against one
    known pair, then the other images decrypted with the survivor (when exactly one
    survives). Its own key at M = 2, from ``master``: the attack needs the small blocks."""
    started = time.monotonic()
    defender = targets.build(name, master, brute_force.BLOCK_SIZE, FIXED_LABEL)
    encrypted = defender.encrypt(plain)
    found, tried, _ = brute_force.brute_force(
        name, brute_force.BLOCK_SIZE, plain[:1], encrypted[:1]
    )
    values = {}
    if len(found) == 1:
        recovered = targets.from_arrays(name, found[0], brute_force.BLOCK_SIZE)
        values = score(recovered.decrypt_any(encrypted[1:]), plain[1:])
    return row(
        name,
        "brute-force",
        defender,
        k=1,
        keys_tested=tried,
        key_recovered=len(found) == 1 and known_plaintext.equivalent(name, found[0], defender),
        seconds=time.monotonic() - started,
        **values,
    )


def key_space_row(name, defender, plain, settings) -> dict:
    """Measure keys/s of a known-plaintext brute force: build a candidate, encrypt, compare."""
    master, image, observed = (
        generate_key(settings.block_size),
        plain[:1],
        defender.encrypt(plain[:1]),
    )

    def try_key(i: int) -> bool:
        candidate = targets.build(name, master, defender.block_size, f"audit/{i}")
        return keyspace.matches(candidate.encrypt(image), observed)

    rate = keyspace.keys_per_second(try_key, settings.audit_seconds)
    return row(
        name,
        "key-space",
        defender,
        key_space_log2=defender.key_space_log2,
        keys_per_second=rate,
        brute_force_log10_years=keyspace.brute_force_log10_years(defender.key_space_log2, rate),
    )
