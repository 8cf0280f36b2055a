"""The transform family: parity with literal renderings of each reference algorithm on real
CIFAR images for fixed keys, exact round trips on every path, the FFX test vector, gradients.
"""

from __future__ import annotations

import literal_transforms as literal
import numpy as np
import pytest
import torch
from literal_cipher import literal_encrypt_image

from lie_ray import transforms
from lie_ray.cipher import from_permutation
from lie_ray.data.cifar import load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import generate_key, le_permutation
from lie_ray.keys.policies import make_policy
from lie_ray.transforms import registry
from lie_ray.transforms.ffx import ffx_lookup


def reference_keys(name: str, m: int, seed: int) -> dict[str, np.ndarray]:
    """Fixed keys drawn the way each reference draws them (from a seeded generator)."""
    rng = np.random.default_rng(seed)
    d, n = 3 * m * m, (32 // m) ** 2
    if name in ("le", "shuffle"):
        return {"perm": rng.permutation(2 * d if name == "le" else d)}
    if name == "np":
        return {"flip": rng.permutation(d) > d / 2}
    if name == "ffx":
        return {"flip": rng.permutation(d) > d / 2, "password": "password"}
    if name == "pe":
        return {"inv": rng.integers(0, 2, 32 * 32 * 3), "colour": rng.integers(0, 6, 32 * 32)}
    if name == "ele":
        return {
            "perms": np.stack([rng.permutation(2 * d) for _ in range(n)]),
            "block_perm": rng.permutation(n),
        }
    return {
        "rotate": rng.integers(0, 4, n),
        "negaposi": rng.integers(0, 2, n),
        "reverse": rng.integers(0, 3, n),
        "channel": rng.integers(0, 6, n),
        "shuffle": rng.permutation(n),
    }


def literal_render(name, variant, key, m, image):
    if name == "le":
        return literal_encrypt_image(image, list(key["perm"]), m)
    if name == "shuffle":
        return literal.shuffle(image, key["perm"], m)
    if name == "np":
        return literal.negative_positive(image, key["flip"], m)
    if name == "ffx":
        return literal.ffx(
            image, key["flip"], ffx_lookup(key["password"]), m, variant == "reference"
        )
    if name == "pe":
        return literal.pe(image, key["inv"], key["colour"])
    if name == "ele":
        return literal.ele(image, key["perms"], key["block_perm"], m)
    return literal.etc(image, key, m, variant == "reference")


PARITY = (
    [("le", "paper", m) for m in (2, 4, 8)]
    + [("ele", "paper", m) for m in (2, 4)]
    + [("pe", "paper", 1)]
    + [("etc", v, m) for v in ("paper", "reference") for m in (4, 8)]
    + [("shuffle", "paper", m) for m in (2, 4, 8)]
    + [("np", "paper", m) for m in (2, 4, 8)]
    + [("ffx", v, m) for v in ("paper", "reference") for m in (2, 4, 8)]
)


@pytest.fixture(scope="module")
def cifar_images(cifar_dir):
    return load_split(cifar_dir, "test").images[:3]


@pytest.mark.parametrize("name,variant,m", PARITY, ids=[f"{n}-{v}-M{m}" for n, v, m in PARITY])
def test_matches_literal_reference_on_cifar(name, variant, m, cifar_images):
    key = reference_keys(name, m, seed=m)
    t = transforms.from_arrays(name, key, block_size=m, variant=variant)
    nchw = torch.from_numpy(cifar_images).permute(0, 3, 1, 2)
    expected = np.stack([literal_render(name, variant, key, m, im) for im in cifar_images])
    if name == "ffx" and variant == "reference":  # the reference quantises floats: floor(255 x)
        encrypted = t.encrypt(nchw.float() / 255).permute(0, 2, 3, 1).numpy()
    else:
        encrypted = t.encrypt(cifar_images)
    np.testing.assert_array_equal(encrypted, expected)
    assert encrypted.dtype == (np.float32 if name == "ffx" else np.uint8)
    assert not np.array_equal(encrypted, cifar_images)
    if getattr(t, "invertible", True):
        np.testing.assert_array_equal(t.decrypt(encrypted), cifar_images)
    else:
        with pytest.raises(LieRayError, match="cannot be decrypted"):
            t.decrypt(encrypted)


INVERTIBLE = [
    (n, v)
    for n in transforms.names()
    for v in transforms.REGISTRY[n].variants
    if (n, v) != ("etc", "reference")
]


@pytest.mark.parametrize("name,variant", INVERTIBLE)
def test_round_trips_exact_on_numpy_and_torch(name, variant, cifar_images):
    t = transforms.build(name, generate_key(4), variant=variant, label="batch/train/3")
    np.testing.assert_array_equal(t.decrypt(t.encrypt(cifar_images)), cifar_images)
    nchw = torch.from_numpy(cifar_images).permute(0, 3, 1, 2)  # non-contiguous on purpose
    as_float = nchw.float() / 255
    encrypted = t.encrypt(as_float)
    numpy_path = torch.from_numpy(t.encrypt(cifar_images)).permute(0, 3, 1, 2)
    if name == "ffx":
        if variant == "paper":
            assert torch.equal(encrypted, numpy_path)
        assert torch.equal(t.decrypt(t.encrypt(nchw), dtype=torch.uint8), nchw)
        assert torch.equal(t.decrypt(encrypted), as_float)
    else:
        assert torch.equal(t.encrypt(nchw), numpy_path)
        assert torch.equal(torch.round(encrypted * 255).to(torch.uint8), numpy_path)
        assert torch.equal(t.decrypt(encrypted), as_float)
        assert torch.equal(t.decrypt(t.encrypt(nchw)), nchw)


def test_ffx_lookup_matches_the_test_vector():
    lookup = ffx_lookup("password")
    assert lookup[:8].tolist() == [355, 522, 858, 133, 916, 326, 747, 930]
    assert (lookup.max(), lookup.min()) == (996, 2)
    t = transforms.from_arrays("ffx", {"flip": np.ones(48, bool), "password": "password"})
    assert np.array_equal(t.key_arrays()["lookup"], lookup)


def test_keys_derive_by_label_and_round_trip_through_arrays(tmp_path):
    key = generate_key(4)
    for name in transforms.names():
        fixed, other = transforms.build(name, key), transforms.build(name, key, label="batch/x/1")
        again = transforms.build(name, key)
        assert fixed.fingerprint == again.fingerprint != other.fingerprint
        copy = transforms.from_arrays(name, fixed.key_arrays(), block_size=fixed.block_size)
        assert copy.fingerprint == fixed.fingerprint
        assert fixed.gradient in ("true", "bpda") and fixed.key_space_log2 > 5
        assert str(fixed.key_arrays()) not in repr(fixed)
    assert (
        transforms.build("le", key).fingerprint
        == from_permutation(le_permutation(key, "fixed", 96), block_size=4).fingerprint
    )
    np_key = transforms.build("np", key, block_size=4).key_arrays()["flip"]
    assert np_key.sum() == 23  # randperm(48) > 24, as the reference draws it
    assert round(transforms.build("np", key, block_size=2).key_space_log2, 3) == round(
        np.log2(792), 3
    )


def test_true_gradients_and_bpda(cifar_images):
    key = generate_key(4)
    x = (torch.from_numpy(cifar_images).permute(0, 3, 1, 2).float() / 255).requires_grad_()
    weights = torch.rand(x.shape)
    for name in transforms.names():
        t = transforms.build(name, key)
        out = t.with_grad(x)
        exact = t.encrypt(x.detach())
        assert (out.detach() - exact).abs().max() < 1e-6
        (grad,) = torch.autograd.grad((out * weights).sum(), x)
        if name in ("shuffle", "np", "pe", "etc"):  # a signed permutation: |grad| permutes w
            assert torch.allclose(
                grad.abs().flatten(1).sort(1).values, weights.flatten(1).sort(1).values
            )
        elif name == "ffx":
            assert torch.equal(grad, weights)  # straight-through
        else:
            assert grad.abs().sum() > 0
    np_grad = torch.autograd.grad(transforms.build("np", key).with_grad(x).sum(), x)[0]
    flip = transforms.build("np", key).key_arrays()["flip"]
    assert set(np_grad.unique().tolist()) == {-1.0, 1.0}
    assert (np_grad < 0).float().mean().item() == pytest.approx(flip.mean())


def test_policies_serve_every_transform(cifar_images):
    key = generate_key(4)
    ids = np.array([0, 1, 2])
    for name in ("ffx", "pe", "shuffle"):
        keyed = transforms.TransformSpec(name).keyed(key)
        encrypted, labels = make_policy("per-image").encrypt(keyed, cifar_images, ids, "train")
        for row, label in enumerate(labels):
            np.testing.assert_array_equal(
                encrypted[row],
                transforms.build(name, key, label=label).encrypt(cifar_images[row : row + 1])[0],
            )
        as_float = torch.from_numpy(cifar_images).permute(0, 3, 1, 2).float() / 255
        on_worker = make_policy("per-image").encrypt_torch(keyed, as_float, ids, "train")
        expected = torch.from_numpy(encrypted).permute(0, 3, 1, 2).float()
        expected = expected if name == "ffx" else expected / 255
        assert (on_worker - expected).abs().max() < 1e-6


def test_bad_keys_and_names_are_one_line_errors():
    with pytest.raises(LieRayError, match="unknown transform"):
        transforms.build("rot13", generate_key(4))
    with pytest.raises(LieRayError, match="permutation of 0..47"):
        transforms.from_arrays("shuffle", {"perm": np.zeros(48, int)})
    with pytest.raises(LieRayError, match="no variant"):
        transforms.from_arrays("np", {"flip": np.ones(48, bool)}, variant="reference")
    with pytest.raises(LieRayError, match="does not divide"):
        transforms.build("np", generate_key(4), block_size=5)


# ---------------------------------------------------------------- facts on the classes
def test_every_registered_transform_has_every_fact_other_parts_read():
    for name, cls in transforms.REGISTRY.items():
        assert registry.check_facts(cls) is cls and cls.name == name
        assert set(cls.key_fields) <= set(transforms.build(name, generate_key()).key_arrays())
    assert len({cls.label for cls in transforms.REGISTRY.values()}) == len(transforms.REGISTRY)


def test_a_transform_lacking_a_fact_is_refused():
    class Unlabelled(transforms.REGISTRY["shuffle"].__base__):  # a GatherTransform, no facts
        name, gradient, adaptation, key_fields = "unlabelled", "true", False, ("perm",)

    with pytest.raises(LieRayError, match="Unlabelled lacks the class attribute.*label"):
        registry.check_facts(Unlabelled)


def test_known_plaintext_recoveries_cover_exactly_the_transforms_that_claim_one():
    from lie_ray.privacy.known_plaintext import RECOVERERS

    claimed = {name for name, cls in transforms.REGISTRY.items() if cls.known_plaintext}
    assert set(RECOVERERS) == claimed
