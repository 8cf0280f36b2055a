"""The exact cipher: bit-exact vectors, round trips, both array kinds, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from literal_cipher import literal_decrypt_image, literal_encrypt_image

from lie_ray.cipher import BlockCipher, from_permutation
from lie_ray.data.cifar import load_split
from lie_ray.errors import LieRayError
from lie_ray.transforms.nibble.kernels_numpy import gather_bytes_numpy
from lie_ray.transforms.nibble.kernels_torch import device_tables, gather_bytes_torch
from lie_ray.transforms.nibble.reference import reference_decrypt, reference_encrypt


def random_key(block_size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(2 * block_size * block_size * 3)


def test_hand_worked_vector_block_size_1():
    # d = 3; key [5,0,3,1,4,2]: positions 0 and 4 are reversed (key > 3).
    # y = lows [2,4,6] + highs [1,3,5]; reversed -> [13,4,6,1,12,5]; gathered by the key ->
    # [5,13,1,4,12,6]; reversed again -> [10,13,1,4,3,6]; re-joined 16*z[3+e] + z[e] ->
    # (4*16+10, 3*16+13, 6*16+1) = (0x4A, 0x3D, 0x61).
    cipher = from_permutation([5, 0, 3, 1, 4, 2], block_size=1)
    pixel = np.array([[[[0x12, 0x34, 0x56]]]], dtype=np.uint8)
    assert cipher.encrypt(pixel).tolist() == [[[[0x4A, 0x3D, 0x61]]]]
    assert cipher.decrypt(cipher.encrypt(pixel)).tolist() == pixel.tolist()


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_matches_literal_reference_on_random_images(block_size):
    key = random_key(block_size, seed=block_size)
    images = np.random.default_rng(1).integers(0, 256, (3, 16, 24, 3), dtype=np.uint8)
    expected = np.stack([literal_encrypt_image(image, list(key), block_size) for image in images])
    cipher = from_permutation(key, block_size=block_size)
    np.testing.assert_array_equal(cipher.encrypt(images), expected)
    np.testing.assert_array_equal(reference_encrypt(images, key, block_size), expected)


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_matches_literal_reference_on_cifar(block_size, cifar_dir):
    images = load_split(cifar_dir, "test").images[:4]
    key = random_key(block_size, seed=100 + block_size)
    cipher = from_permutation(key, block_size=block_size)
    encrypted = cipher.encrypt(images)
    for image, ciphertext in zip(images, encrypted):
        np.testing.assert_array_equal(
            ciphertext, literal_encrypt_image(image, list(key), block_size)
        )
        np.testing.assert_array_equal(
            literal_decrypt_image(ciphertext, list(key), block_size), image
        )
    assert not np.array_equal(encrypted, images)


@pytest.mark.parametrize("block_size", [2, 4, 8])
def test_numpy_round_trip_is_exact(block_size):
    images = np.random.default_rng(2).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    cipher = from_permutation(random_key(block_size, 3), block_size=block_size)
    np.testing.assert_array_equal(cipher.decrypt(cipher.encrypt(images)), images)
    np.testing.assert_array_equal(
        reference_decrypt(cipher.encrypt(images), cipher.perm, block_size), images
    )


def test_torch_paths_match_numpy_and_round_trip():
    images = np.random.default_rng(4).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    cipher = from_permutation(random_key(4, 5), block_size=4)
    nchw = torch.from_numpy(images).permute(0, 3, 1, 2)  # deliberately non-contiguous
    encrypted = cipher.encrypt(nchw)
    assert encrypted.dtype == torch.uint8 and encrypted.shape == nchw.shape
    np.testing.assert_array_equal(encrypted.permute(0, 2, 3, 1).numpy(), cipher.encrypt(images))
    assert torch.equal(cipher.decrypt(encrypted), nchw)

    as_float = nchw.double() / 255
    encrypted_float = cipher.encrypt(as_float)
    assert encrypted_float.dtype == torch.float64
    assert torch.equal(torch.round(encrypted_float * 255).to(torch.uint8), encrypted)
    assert torch.equal(cipher.decrypt(encrypted_float), as_float)  # bit-exact floats back


def test_single_images_without_batch_axis():
    image = np.random.default_rng(6).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    cipher = from_permutation(random_key(4, 7), block_size=4)
    assert cipher.encrypt(image).shape == (32, 32, 3)
    chw = torch.from_numpy(image).permute(2, 0, 1)
    np.testing.assert_array_equal(
        cipher.encrypt(chw).permute(1, 2, 0).numpy(), cipher.encrypt(image)
    )


def test_gpu_kernel_matches_numpy_kernel_on_cpu():
    # The torch kernel runs on GPUs only; check its arithmetic here on the CPU.
    cipher = from_permutation(random_key(4, 8), block_size=4)
    flat = np.random.default_rng(9).integers(0, 256, (4, 3 * 32 * 32), dtype=np.uint8)
    tables = device_tables(cipher, "encrypt", 32, 32, torch.device("cpu"))
    np.testing.assert_array_equal(
        gather_bytes_torch(torch.from_numpy(flat), tables).numpy(),
        gather_bytes_numpy(flat, cipher.tables("encrypt", 32, 32, "chw")),
    )


def test_different_keys_give_different_ciphertexts():
    images = np.random.default_rng(10).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    first = from_permutation(random_key(4, 11), block_size=4).encrypt(images)
    second = from_permutation(random_key(4, 12), block_size=4).encrypt(images)
    assert np.mean(first != second) > 0.5


def test_block_size_must_divide_the_image():
    cipher = from_permutation(random_key(3, 13), block_size=3)
    with pytest.raises(LieRayError, match="block size 3 does not divide the image size 32x32"):
        cipher.encrypt(np.zeros((1, 32, 32, 3), dtype=np.uint8))


@pytest.mark.parametrize(
    "perm, message",
    [
        (list(range(95)), "needs a permutation of 0..95"),
        ([0] * 96, "not a permutation"),
        (list(range(1, 97)), "not a permutation"),
    ],
)
def test_invalid_permutations_are_rejected(perm, message):
    with pytest.raises(LieRayError, match=message):
        from_permutation(perm, block_size=4)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_float_input_is_rejected(bad):
    images = torch.rand(1, 3, 8, 8)
    images[0, 1, 2, 3] = bad
    with pytest.raises(LieRayError, match="NaN or infinite"):
        from_permutation(random_key(4, 14), block_size=4).encrypt(images)


def test_out_of_range_and_wrong_dtypes_are_rejected():
    cipher = from_permutation(random_key(4, 15), block_size=4)
    with pytest.raises(LieRayError, match=r"must lie in \[0, 1\]"):
        cipher.encrypt(torch.full((1, 3, 8, 8), 1.5))
    with pytest.raises(LieRayError, match="must be uint8 NHWC"):
        cipher.encrypt(np.zeros((1, 8, 8, 3), dtype=np.float32))
    with pytest.raises(LieRayError, match="3 channels"):
        cipher.encrypt(np.zeros((1, 8, 8, 4), dtype=np.uint8))


def test_repr_shows_fingerprint_not_key():
    key = random_key(4, 16)
    cipher = BlockCipher(key, block_size=4)
    assert cipher.fingerprint in repr(cipher)
    assert ",".join(map(str, key[:6])) not in repr(cipher).replace(" ", "")


def test_cpu_and_gpu_quantisation_agree_and_round_half_up():
    from lie_ray.transforms.quantise import levels_numpy, levels_torch

    values = torch.cat(
        [
            torch.rand(10_000, dtype=torch.float64),
            (torch.arange(255, dtype=torch.float64) + 0.5) / 255,  # exact halves
            torch.arange(256, dtype=torch.float64) / 255,
        ]
    )
    assert torch.equal(levels_numpy(values), levels_torch(values))
    assert levels_numpy(torch.tensor([0.5 / 255, 55 / 255, 1.0])).tolist() == [1, 55, 255]
