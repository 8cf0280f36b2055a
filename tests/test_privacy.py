"""Privacy attacks: exact key recovery on real images, brute force, scoring, the ITN job.

The key-recovery tests use the project's real CIFAR-10 test images; one Ray Train job (the
session cluster) trains the learned inversion and must beat ciphertext-only folding.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from lie_ray import transforms
from lie_ray.app.cli import app
from lie_ray.data.cifar import load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import generate_key, import_permutation, save_key
from lie_ray.privacy import brute_force, known_plaintext, targets
from lie_ray.privacy.chosen_plaintext import crafted_probes
from lie_ray.privacy.ciphertext_only import block_mean, fr_basic
from lie_ray.privacy.keyspace import brute_force_log10_years
from lie_ray.privacy.run import run_privacy
from lie_ray.privacy.scoring import psnr_per_image, score, ssim_per_image
from lie_ray.privacy.settings import ItnSettings, get_privacy_preset
from lie_ray.report.privacy import section

RECOVERABLE = ["le", "shuffle", "np", "pe", "etc"]


@pytest.fixture(scope="module")
def test_images(cifar_dir) -> np.ndarray:
    return load_split(cifar_dir, "test").images


@pytest.fixture(scope="module")
def master():
    return generate_key(4)


@pytest.mark.parametrize("name", RECOVERABLE)
def test_known_plaintext_recovers_the_exact_key_from_real_images(name, test_images, master):
    for i in range(3):  # three keys, each on its own real images
        truth = targets.build(name, master, 4, f"test/{i}")
        pairs = test_images[np.random.default_rng(i).permutation(len(test_images))[:6]]
        k, arrays = known_plaintext.smallest_k(name, pairs, truth.encrypt(pairs), 4)
        assert k is not None and k <= 4
        assert known_plaintext.equivalent(name, arrays, truth)
        if name != "etc":  # EtC's rotation/flip codes overlap: judged by what the key does
            for field, value in truth.key_arrays().items():
                np.testing.assert_array_equal(arrays[field], value)
        rest = test_images[:64]
        recovered = targets.from_arrays(name, arrays, 4)
        np.testing.assert_array_equal(recovered.decrypt(truth.encrypt(rest)), rest)


def test_le_key_is_determined_by_one_image_but_not_by_a_flat_one(test_images, master):
    truth = targets.build("le", master, 4, "fixed")
    k, arrays = known_plaintext.smallest_k("le", test_images[:1], truth.encrypt(test_images[:1]), 4)
    assert k == 1
    np.testing.assert_array_equal(arrays["perm"], truth.key_arrays()["perm"])
    flat = np.full((2, 32, 32, 3), 77, dtype=np.uint8)  # every nibble alike: nothing to learn
    assert known_plaintext.smallest_k("le", flat, truth.encrypt(flat), 4)[0] is None


@pytest.mark.parametrize("name", RECOVERABLE)
def test_one_crafted_probe_reveals_the_key(name, master):
    truth = targets.build(name, master, 4, "probe")
    probes = crafted_probes(name, 2, seed=0)
    k, arrays = known_plaintext.smallest_k(name, probes, truth.encrypt(probes), 4)
    assert k == 1 and known_plaintext.equivalent(name, arrays, truth)


def test_ele_needs_several_probes_and_then_has_every_block_key(master, test_images):
    truth = targets.build("ele", master, 4, "probe")
    probes = crafted_probes("ele", 10, seed=1)
    k, arrays = known_plaintext.smallest_k("ele", probes, truth.encrypt(probes), 4)
    assert k is not None and 3 <= k <= 10  # a block is seen once per image, not 64 times
    for field, value in truth.key_arrays().items():
        np.testing.assert_array_equal(arrays[field], value)
    wrong = known_plaintext.smallest_k("ele", probes[:2], truth.encrypt(probes[:2]), 4)
    assert wrong[0] is None and not known_plaintext.equivalent("ele", wrong[1], truth)


def test_ffx_pairs_reveal_its_table_and_binary_key_though_not_its_password(test_images, master):
    # The oracle: the key FFX derives (binary key, and the pyffx lookup of a derived password).
    for i in range(3):
        truth = targets.build("ffx", master, 4, f"test/{i}")
        pairs = test_images[np.random.default_rng(i).permutation(len(test_images))[:24]]
        k, arrays = known_plaintext.smallest_k("ffx", pairs, truth.encrypt(pairs), 4)
        assert k is not None and k <= 24
        for field, value in truth.key_arrays().items():
            np.testing.assert_array_equal(arrays[field], value)
        rest = test_images[:64]
        np.testing.assert_array_equal(
            targets.from_arrays("ffx", arrays, 4).decrypt(truth.encrypt(rest)), rest
        )
    # One natural pair: the binary key whole and most of the table; decrypting with that
    # partial key reads the values it cannot explain as 0, and still gets most levels right.
    one = known_plaintext.smallest_k("ffx", pairs[:1], truth.encrypt(pairs[:1]), 4)
    assert one[0] is None
    np.testing.assert_array_equal(one[1]["flip"], truth.key_arrays()["flip"])
    partial = targets.from_arrays("ffx", one[1], 4)
    with pytest.raises(LieRayError, match="not an FFX ciphertext of this key"):
        partial.decrypt(truth.encrypt(rest))
    assert (partial.decrypt_any(truth.encrypt(rest)) == rest).mean() > 0.9
    # Chosen plaintext: two noise probes carry every level at flipped positions.
    probes = crafted_probes("ffx", 3, seed=0)
    k, arrays = known_plaintext.smallest_k("ffx", probes, truth.encrypt(probes), 4)
    assert k is not None and k <= 2 and known_plaintext.equivalent("ffx", arrays, truth)


@pytest.mark.parametrize("name", [n for n, c in transforms.REGISTRY.items() if c.brute_forceable])
def test_brute_force_at_m2_finds_exactly_the_true_key_among_792(name, test_images, master):
    # NP as lie_ray keys it; FFX keyed with the reference's published password (what it
    # fixes in its code), the only FFX key an attacker with public knowledge can reach.
    truth = targets.build(name, master, 2, "fixed")
    if name == "ffx":
        truth = targets.from_arrays(
            "ffx", {"flip": truth.key_arrays()["flip"], "password": "password"}, 2
        )
    found, tried, rate = brute_force.brute_force(
        name, 2, test_images[:1], truth.encrypt(test_images[:1])
    )
    assert tried == 792 == round(2**truth.key_space_log2)
    assert len(found) == 1 and rate > 0
    np.testing.assert_array_equal(found[0]["flip"], truth.key_arrays()["flip"])


def test_ffx_with_a_derived_password_is_out_of_the_brute_forces_reach(test_images, master):
    # lie_ray's FFX derives its password from the master key: the attacker, given only the
    # pair and the public password, tries all 792 binary keys and finds none; the key space
    # counts the password's 128 bits.
    truth = targets.build("ffx", master, 2, "fixed")
    found, tried, _ = brute_force.brute_force(
        "ffx", 2, test_images[:1], truth.encrypt(test_images[:1])
    )
    assert tried == 792 and found == []
    assert truth.key_space_log2 == pytest.approx(math.log2(792) + 128)


def test_ssim_is_one_for_the_image_itself_and_low_for_its_encryption(test_images, master):
    plain = test_images[:32]
    np.testing.assert_allclose(ssim_per_image(plain, plain), 1.0, atol=1e-6)
    assert np.isinf(psnr_per_image(plain, plain)).all()
    encrypted = targets.build("le", master, 4, "fixed").encrypt(plain)
    assert ssim_per_image(encrypted, plain).mean() < 0.1
    summary = score(encrypted, plain)
    assert summary["n"] == 32 and summary["ssim_low"] < summary["ssim"] < summary["ssim_high"]


def test_fr_basic_undoes_negative_positive(test_images):
    plain = test_images[:8]
    np.testing.assert_array_equal(fr_basic(255 - plain), fr_basic(plain))
    floats = plain.astype(np.float32) / 255
    np.testing.assert_allclose(fr_basic(1 - floats), fr_basic(floats), atol=1e-6)


def test_block_means_survive_shuffle_and_show_the_image(test_images, master):
    plain = test_images[:32]
    encrypted = targets.build("shuffle", master, 4, "fixed").encrypt(plain)
    np.testing.assert_array_equal(block_mean(encrypted, 4), block_mean(plain, 4))
    assert (
        ssim_per_image(block_mean(encrypted, 4), plain).mean()
        > ssim_per_image(encrypted, plain).mean() + 0.05
    )


def test_key_space_audit():
    le = targets.from_arrays("le", {"perm": np.arange(96)}, 4)
    assert le.key_space_log2 == pytest.approx(math.log2(math.factorial(96)))
    # 2**61 keys at 1 key/s: 2**60 s expected, 3.65e10 years.
    assert brute_force_log10_years(61, 1.0) == pytest.approx(math.log10(2**60 / 31557600))


def test_privacy_job_writes_the_table_and_the_itn_beats_fr_basic(
    ray_cluster, cifar_dir, tmp_path, master
):
    settings = dataclasses.replace(
        get_privacy_preset("smoke", 4),
        test_images=64,
        kp_keys=2,
        kp_max_k=4,
        audit_seconds=0.05,
        itn=ItnSettings(images=384, images_per_key=8, epochs=3, width=16),
    )
    table = run_privacy(cifar_dir, master, tmp_path, ["le", "np"], settings)
    rows = {
        (r["transform"], r["attack"]): r
        for r in pq.read_table(tmp_path / "privacy.parquet").to_pylist()
    }
    assert table.num_rows == len(rows)
    for name in ("le", "np"):
        for attack in (
            "ciphertext",
            "fr-basic",
            "itn",
            "known-plaintext",
            "chosen-plaintext",
            "key-space",
        ):
            assert (name, attack) in rows
        assert rows[(name, "known-plaintext")]["key_recovered"] is True
        assert rows[(name, "known-plaintext")]["ssim"] == pytest.approx(1.0)
        assert rows[(name, "fr-basic")]["key_recovered"] is None
    assert rows[("np", "brute-force")]["key_recovered"] is True
    assert rows[("np", "brute-force")]["block_size"] == 2
    assert rows[("le", "itn")]["ssim"] > rows[("le", "fr-basic")]["ssim"] + 0.03
    assert "| le | itn |" in section(tmp_path)
    with Image.open(tmp_path / "privacy_gallery.png") as png:
        assert png.size[0] > 100


def test_privacy_command_rejects_bad_input_before_writing(tmp_path, master):
    key_path = save_key(master, tmp_path / "master.json")
    result = CliRunner().invoke(
        app,
        [
            "privacy",
            "--key",
            str(key_path),
            "--transforms",
            "le,nope",
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 2 and "unknown transform(s) nope" in result.output
    assert not (tmp_path / "out").exists()
    imported = save_key(import_permutation(np.arange(96), 4), tmp_path / "perm.json")
    result = CliRunner().invoke(
        app, ["privacy", "--key", str(imported), "--out", str(tmp_path / "out")]
    )
    assert result.exit_code == 2 and "imported permutation" in result.output
    assert not (tmp_path / "out").exists()


def test_the_sweep_runs_the_privacy_phase_unless_told_not_to(tmp_path, cifar_dir):
    from lie_ray.app.study import PHASES, SweepRequest, resolve_plan

    request = SweepRequest(tmp_path / "out", cifar_dir, "smoke", scenarios="Plain")
    assert resolve_plan(request).privacy == get_privacy_preset("smoke", 4)
    assert resolve_plan(request).privacy_transforms == tuple(targets.names())  # every one
    picked = resolve_plan(dataclasses.replace(request, privacy=("np", "le")))
    assert picked.privacy_transforms == ("np", "le")
    assert resolve_plan(dataclasses.replace(request, privacy=())).privacy is None
    assert PHASES.index("privacy") == PHASES.index("report") - 1
    result = CliRunner().invoke(app, ["sweep", "--help"])
    assert "--no-privacy" in result.output


def test_psnr_is_a_median_beside_the_share_of_exact_images(test_images):
    # One exact image among 8 noisy ones must not make the figure infinite (the mean did),
    # and "all" exact only when every image is.
    from lie_ray.report.privacy import exact_cell, psnr_cell

    plain = test_images[:9]
    noisy = np.clip(
        plain.astype(np.int64) + np.random.default_rng(0).integers(-8, 9, plain.shape), 0, 255
    ).astype(np.uint8)
    noisy[0] = plain[0]
    values = score(noisy, plain)
    per_image = psnr_per_image(noisy, plain)
    assert np.isinf(per_image[0]) and np.isfinite(per_image[1:]).all()
    assert values["psnr"] == pytest.approx(np.sort(per_image)[4])  # the 5th of 9
    assert values["exact_share"] == pytest.approx(1 / 9)
    assert psnr_cell(values["psnr"]) == f"{values['psnr']:.1f}"
    assert exact_cell(values["exact_share"]) == "11%"
    exact = score(plain, plain)
    assert math.isinf(exact["psnr"]) and exact_cell(exact["exact_share"]) == "all"
