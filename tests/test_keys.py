"""Key files, derivation and fingerprints: round trips and every bad-key case."""

from __future__ import annotations

import base64
import json
import os
import stat

import numpy as np
import pytest

from lie_ray import transforms
from lie_ray.errors import LieRayError
from lie_ray.keys import (
    Key,
    generate_key,
    hkdf_sha256,
    import_permutation,
    le_permutation,
    load_key,
    save_key,
)


def key_record(path):
    return json.loads(path.read_text())


def write_record(path, record, mode=0o600):
    path.write_text(json.dumps(record))
    os.chmod(path, mode)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "master.json"
    save_key(generate_key(block_size=4), path)
    return path


def test_round_trip_keeps_secret_and_fingerprint(key_file):
    first, second = load_key(key_file), load_key(key_file)
    assert first.fingerprint == second.fingerprint and len(first.fingerprint) == 16
    np.testing.assert_array_equal(
        transforms.build("le", first, label="batch/train/3").perm,
        transforms.build("le", second, label="batch/train/3").perm,
    )
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not [p for p in key_file.parent.iterdir() if p.name.startswith(".")]  # no temp left


def test_new_keys_differ(tmp_path):
    assert generate_key().fingerprint != generate_key().fingerprint


def test_permutation_key_round_trip(tmp_path):
    perm = np.random.default_rng(0).permutation(24)
    path = tmp_path / "imported.json"
    save_key(import_permutation(perm, block_size=2), path)
    np.testing.assert_array_equal(transforms.build("le", load_key(path)).perm, perm)
    with pytest.raises(LieRayError, match="cannot derive sub-key"):
        transforms.build("le", load_key(path), label="batch/train/0")


def test_save_refuses_to_clobber_a_key(key_file):
    with pytest.raises(LieRayError, match="already exists.*--force"):
        save_key(generate_key(), key_file)
    save_key(generate_key(), key_file, overwrite=True)


def test_rfc5869_test_case_1():
    okm = hkdf_sha256(bytes([0x0B] * 22), bytes(range(0xF0, 0xFA)), 42, salt=bytes(range(13)))
    assert okm.hex() == (
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert len(hkdf_sha256(b"k" * 32, b"info", 8160)) == 8160  # RFC 5869's 255 blocks
    with pytest.raises(ValueError):
        hkdf_sha256(b"k" * 32, b"info", 8161)


def test_derivation_is_deterministic_label_dependent_and_a_permutation():
    secret = bytes(range(32))
    first = le_permutation(Key("master", secret, 4), "batch/train/0", 96)
    np.testing.assert_array_equal(
        first, le_permutation(Key("master", secret, 4), "batch/train/0", 96)
    )
    assert sorted(first.tolist()) == list(range(96))
    assert not np.array_equal(first, le_permutation(Key("master", secret, 4), "batch/train/1", 96))
    assert not np.array_equal(
        first, le_permutation(Key("master", bytes(32), 4), "batch/train/0", 96)
    )


def test_key_text_forms_never_show_the_secret(key_file):
    key = load_key(key_file)
    secret_b64 = key_record(key_file)["secret"]
    for text in (repr(key), str(key), f"{key}"):
        assert key.fingerprint in text and secret_b64 not in text


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda r: r.update(version=2), "has version 2"),
        (lambda r: r.update(format="something-else"), "not a lie_ray key file"),
        (
            lambda r: r.update(secret=base64.b64encode(bytes(31)).decode()),
            "has 31 bytes, expected 32",
        ),
        (lambda r: r.update(secret="***not base64***"), "not valid base64"),
        (lambda r: r.update(kind="rsa"), "unknown kind 'rsa'"),
        (lambda r: r.update(block_size=0), "invalid block_size"),
        (
            lambda r: r.update(kind="permutation", secret=list(range(95))),
            "needs a permutation of 0..95",
        ),
        (lambda r: r.update(kind="permutation", secret=[0] * 96), "not a permutation"),
    ],
)
def test_bad_key_files_are_rejected_in_one_line(key_file, mutate, message):
    record = key_record(key_file)
    mutate(record)
    write_record(key_file, record)
    with pytest.raises(LieRayError, match=message) as caught:
        load_key(key_file)
    assert "\n" not in str(caught.value)


def test_missing_and_truncated_key_files(tmp_path, key_file):
    with pytest.raises(LieRayError, match="not found.*lie-ray keygen"):
        load_key(tmp_path / "absent.json")
    text = key_file.read_text()
    key_file.write_text(text[: len(text) // 2])
    with pytest.raises(LieRayError, match="truncated or not JSON"):
        load_key(key_file)
    key_file.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(LieRayError, match="truncated or not JSON"):
        load_key(key_file)


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_keys_readable_by_others_are_refused(key_file, mode):
    os.chmod(key_file, mode)
    with pytest.raises(LieRayError, match="readable by group or others.*chmod 600"):
        load_key(key_file)


def test_key_for_another_block_size(tmp_path):
    path = tmp_path / "m8.json"
    save_key(generate_key(block_size=8), path)
    with pytest.raises(LieRayError, match="made for block size 8.*--block-size 4"):
        load_key(path, block_size=4)
    odd = tmp_path / "m3.json"
    save_key(generate_key(block_size=3), odd)
    with pytest.raises(LieRayError, match="block size 3 does not divide the image size 32x32"):
        transforms.build("le", load_key(odd)).encrypt(np.zeros((1, 32, 32, 3), dtype=np.uint8))
