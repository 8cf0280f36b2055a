"""Key policies: reproducible per-batch keys that depend on ids, not on how Ray splits data."""
from __future__ import annotations

import numpy as np
import pytest

from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import sorted_by_id, to_ray_dataset
from lie_ray.encryption.run import encrypt_dataset
from lie_ray.keys.policies import PolicySpec
from lie_ray.errors import LieRayError
from lie_ray.keys import generate_key, import_permutation, load_key, save_key
from lie_ray.transforms import TransformSpec
from lie_ray.keys.policies import FixedPolicy, PerBatchPolicy, make_policy


def le(key):
    return TransformSpec("le").keyed(key)


@pytest.fixture
def key_path(tmp_path):
    return save_key(generate_key(block_size=4), tmp_path / "master.json")


def test_fixed_policy_uses_one_key_for_train_and_test(key_path):
    key = load_key(key_path)
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    train, train_labels = FixedPolicy().encrypt(le(key), images, np.arange(4), "train")
    test, _ = FixedPolicy().encrypt(le(key), images, np.arange(100, 104), "test")
    np.testing.assert_array_equal(train, test)
    assert set(train_labels) == {"fixed"}


def test_per_batch_labels_follow_ids():
    labels = PerBatchPolicy(batch_size=10).labels(np.array([0, 9, 10, 25, 3]), "test")
    assert labels.tolist() == ["batch/test/0", "batch/test/0", "batch/test/1", "batch/test/2",
                               "batch/test/0"]


def test_per_batch_is_reproducible_and_order_independent(key_path):
    images = np.random.default_rng(1).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    ids = np.arange(50)
    policy = PerBatchPolicy(batch_size=8)
    whole, labels = policy.encrypt(le(load_key(key_path)), images, ids, "train")
    assert len(set(labels)) == 7
    order = np.random.default_rng(2).permutation(50)
    shuffled, _ = policy.encrypt(le(load_key(key_path)), images[order], ids[order], "train")
    np.testing.assert_array_equal(shuffled, whole[order])
    # Different groups really use different keys.
    same_image = np.repeat(images[:1], 16, axis=0)
    out, _ = policy.encrypt(le(load_key(key_path)), same_image, np.arange(16), "train")
    assert not np.array_equal(out[0], out[8])
    # Train and test batch 0 are different keys.
    test_out, _ = policy.encrypt(le(load_key(key_path)), images[:1], ids[:1], "test")
    assert not np.array_equal(test_out[0], whole[0])


def test_per_batch_in_ray_is_independent_of_block_and_batch_layout(ray_cluster, key_path,
                                                                   cifar_dir):
    split = load_split(cifar_dir, "test").head(400)
    spec = PolicySpec("per-batch", key_batch_size=32)
    runs = []
    for rows_per_block, batch_size, actors in [(400, 400, 1), (37, 23, 2)]:
        dataset = to_ray_dataset(split, rows_per_block=rows_per_block)
        encrypted = encrypt_dataset(dataset, key_path, spec, "test", actors=actors,
                                    batch_size=batch_size)
        runs.append(sorted_by_id(encrypted.take_batch(1000, batch_format="numpy")))
    first, second = runs
    np.testing.assert_array_equal(first["id"], split.ids)
    np.testing.assert_array_equal(first["image"], second["image"])
    np.testing.assert_array_equal(first["key_label"], second["key_label"])
    expected, _ = PerBatchPolicy(32).encrypt(le(load_key(key_path)), split.images, split.ids, "test")
    np.testing.assert_array_equal(first["image"], expected)
    assert len(set(first["key_fingerprint"])) == 13  # ceil(400 / 32) sub-keys


def test_per_batch_refuses_imported_permutation():
    key = import_permutation(np.random.default_rng(3).permutation(96), block_size=4)
    with pytest.raises(LieRayError, match="needs a master key"):
        PerBatchPolicy().check_key(key)


def test_unknown_policy():
    with pytest.raises(LieRayError,
                       match="unknown key policy 'per-epoch'.*fixed, per-batch, per-image"):
        make_policy("per-epoch")
