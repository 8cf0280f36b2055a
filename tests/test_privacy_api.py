"""``lie_ray.privacy.attack``: the privacy attacks as a library call, on real CIFAR images, on
a transform by name, on an object written outside lie_ray, with the ITN here and on Ray."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

from lie_ray import privacy, transforms
from lie_ray.data.cifar import load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import Key, generate_key
from lie_ray.privacy.settings import ItnSettings
from lie_ray.transforms import registry

MASTER = Key("master", bytes(range(7, 39)), block_size=4)
FAST = {"kp_keys": 3, "kp_max_k": 4, "audit_seconds": 0.05}
ITN = ItnSettings(images=384, images_per_key=8, epochs=3, width=16)


@pytest.fixture(scope="module")
def images(cifar_dir) -> np.ndarray:
    return load_split(cifar_dir, "test", limit=48).images


@pytest.fixture(scope="module")
def own(cifar_dir) -> np.ndarray:
    return load_split(cifar_dir, "train", limit=384).images


def test_by_name_the_cli_defender_is_attacked_and_its_key_recovered(images):
    """LE under the master's fixed sub-key (the defender 'lie-ray privacy' attacks): the
    known-plaintext reconstruction is the images themselves, byte for byte; rows that do not
    apply are named with why; the key is in no record, only its fingerprint."""
    found = privacy.attack("le", images, key=MASTER, **FAST)
    print(found)
    defender = transforms.build("le", MASTER, 4)
    rows = {r["attack"]: r for r in found.results.to_pylist()}
    assert set(rows) == {
        "ciphertext",
        "fr-basic",
        "known-plaintext",
        "chosen-plaintext",
        "key-space",
    }
    assert set(found.record["not_run"]) == {"block-mean", "brute-force", "itn"}
    assert {r["key_fingerprint"] for r in rows.values()} == {defender.fingerprint}
    assert np.array_equal(found.reconstructions["known-plaintext"], images)
    assert np.array_equal(found.reconstructions["chosen-plaintext"], images)
    assert np.array_equal(found.reconstructions["ciphertext"], defender.encrypt(images))
    assert rows["known-plaintext"]["key_recovered"] is True
    assert rows["known-plaintext"]["exact_share"] == 1.0
    assert rows["known-plaintext"]["n"] == len(images) - rows["known-plaintext"]["k"]
    assert rows["ciphertext"]["ssim"] < 0.2 and rows["ciphertext"]["exact_share"] == 0.0
    assert rows["key-space"]["key_space_log2"] > 100
    assert found.record["key_fingerprint"] == MASTER.fingerprint
    assert found.record["data"]["images"] == len(images)
    metadata = json.dumps(found.record) + str(found.results.schema.metadata)
    assert bytes(range(7, 39)).hex() not in metadata


def test_an_outside_transform_object_is_attacked_as_it_is(images, monkeypatch):
    """The example plug-in's XOR, loaded from its file (not installed, not registered) and
    keyed outside lie_ray: its own recoverer gives its mask back from one pair."""
    monkeypatch.setattr(registry, "EXTERNAL", dict(registry.EXTERNAL))  # no trace for others
    spec = importlib.util.spec_from_file_location(
        "lie_ray_xor_for_test", REPO_ROOT / "examples" / "xor_transform" / "lie_ray_xor.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    xor = module.BlockXor.from_key(generate_key(4), "fixed", 4, None, (32, 32))
    found = privacy.attack(xor, images, attacks=["ciphertext", "known-plaintext"], **FAST)
    rows = {r["attack"]: r for r in found.results.to_pylist()}
    assert rows["known-plaintext"]["k"] == 1 and rows["known-plaintext"]["key_recovered"]
    assert np.array_equal(found.reconstructions["known-plaintext"], images)
    mask_applied = np.bitwise_xor(found.reconstructions["ciphertext"], images)
    assert np.array_equal(mask_applied[:, :4, :4], mask_applied[:, 4:8, 4:8])  # one mask
    assert found.record["transform"]["name"] == "xor"
    assert {r["key_fingerprint"] for r in rows.values()} == {xor.fingerprint}


def test_the_itn_trains_here_and_on_ray_and_beats_folding(images, own, ray_cluster):
    """The learned inversion, on the attacker's own images: in this process and as the
    CLI's Ray Train job, each better than FR-basic on LE by a clear margin, and the same
    seeded training either way (one worker: DDP changes nothing but float rounding)."""
    ssim = {}
    for where in (False, True):
        found = privacy.attack(
            "le",
            images,
            key=MASTER,
            attacks=["fr-basic", "itn"],
            attacker_images=own,
            itn=ITN,
            ray=where,
        )
        rows = {r["attack"]: r for r in found.results.to_pylist()}
        assert rows["itn"]["ssim"] > rows["fr-basic"]["ssim"] + 0.03, (where, rows)
        assert found.reconstructions["itn"].shape == images.shape
        assert found.record["data"]["attacker_images"] == len(own)
        ssim[where] = rows["itn"]["ssim"]
    print("ITN SSIM here / on Ray:", ssim)
    assert ssim[False] == pytest.approx(ssim[True], abs=0.005)  # the same seeded training


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda x: privacy.attack("le", x[:1]), r"1 image\(s\): pass at least two"),
        (lambda x: privacy.attack("nope", x), r"unknown transform 'nope': choose from .*le"),
        (lambda x: privacy.attack(transforms.REGISTRY["le"], x), r"is a class: pass an instance"),
        (
            lambda x: privacy.attack(transforms.build("le", MASTER, 4), x, key=MASTER),
            r"holds its own key: pass key=None",
        ),
        (lambda x: privacy.attack("le", x, attacks=["ssim"]), r"unknown privacy attack"),
        (
            lambda x: privacy.attack("le", x, attacks=["block-mean"]),
            r"block-mean does not apply to le: its values leave their block",
        ),
        (lambda x: privacy.attack("shuffle", x, attacks=["itn"]), r"itn needs attacker_images="),
        (lambda x: privacy.attack("le", x, block_size=8), r"not taken here.*block_size"),
        (lambda x: privacy.attack("le", torch.full((2, 3, 32, 32), 0.3)), r"8-bit levels k / 255"),
    ],
)
def test_bad_calls_say_what_to_do(images, call, message):
    with pytest.raises(LieRayError, match=message) as raised:
        call(images)
    assert "\n" not in str(raised.value)
