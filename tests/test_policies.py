"""Key policies: reproducible id-group keys that depend on ids, not on how Ray splits data, and
fresh per-minibatch keys that depend on the training step alone."""

from __future__ import annotations

import numpy as np
import pytest

from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import sorted_by_id, to_ray_dataset
from lie_ray.encryption.run import encrypt_dataset
from lie_ray.errors import LieRayError
from lie_ray.keys import generate_key, import_permutation, load_key, save_key
from lie_ray.keys.policies import FixedPolicy, IdGroupPolicy, PolicySpec, make_policy
from lie_ray.transforms import TransformSpec


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


def test_id_group_labels_follow_ids():
    labels = IdGroupPolicy(batch_size=10).labels(np.array([0, 9, 10, 25, 3]), "test")
    assert labels.tolist() == [
        "batch/test/0",
        "batch/test/0",
        "batch/test/1",
        "batch/test/2",
        "batch/test/0",
    ]


def test_id_group_is_reproducible_and_order_independent(key_path):
    images = np.random.default_rng(1).integers(0, 256, (50, 32, 32, 3), dtype=np.uint8)
    ids = np.arange(50)
    policy = IdGroupPolicy(batch_size=8)
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


def test_id_group_in_ray_is_independent_of_block_and_batch_layout(ray_cluster, key_path, cifar_dir):
    split = load_split(cifar_dir, "test").head(400)
    spec = PolicySpec("id-group", key_batch_size=32)
    runs = []
    for rows_per_block, batch_size, actors in [(400, 400, 1), (37, 23, 2)]:
        dataset = to_ray_dataset(split, rows_per_block=rows_per_block)
        encrypted = encrypt_dataset(
            dataset, key_path, spec, "test", actors=actors, batch_size=batch_size
        )
        runs.append(sorted_by_id(encrypted.take_batch(1000, batch_format="numpy")))
    first, second = runs
    np.testing.assert_array_equal(first["id"], split.ids)
    np.testing.assert_array_equal(first["image"], second["image"])
    np.testing.assert_array_equal(first["key_label"], second["key_label"])
    expected, _ = IdGroupPolicy(32).encrypt(le(load_key(key_path)), split.images, split.ids, "test")
    np.testing.assert_array_equal(first["image"], expected)
    assert len(set(first["key_fingerprint"])) == 13  # ceil(400 / 32) sub-keys


def test_id_group_refuses_imported_permutation():
    key = import_permutation(np.random.default_rng(3).permutation(96), block_size=4)
    with pytest.raises(LieRayError, match="needs a master key"):
        IdGroupPolicy().check_key(key)


def test_unknown_policy():
    with pytest.raises(
        LieRayError,
        match="unknown key policy 'per-epoch'.*fixed, id-group, per-minibatch, per-image",
    ):
        make_policy("per-epoch")


def test_per_minibatch_keys_each_training_step_afresh_and_reproducibly(key_path):
    # The worker's encryption under per-minibatch: one key per (epoch, step) whatever the ids
    # in the batch; a new key at the next step and in the next epoch; the same on a rerun
    # (resume); and outside training the id-group keys, which no training step uses.
    import torch

    from lie_ray.scenarios import PAPER_SCENARIOS
    from lie_ray.training.settings import get_preset
    from lie_ray.training.worker import worker_side_encryption

    scenario = PAPER_SCENARIOS["Encrypted-DK"]
    assert scenario.key_policy == "per-minibatch"
    encrypt = worker_side_encryption(scenario, get_preset("smoke"), str(key_path))
    image = (
        torch.from_numpy(np.random.default_rng(4).integers(0, 256, (1, 3, 32, 32))).float() / 255
    )
    same = image.repeat(4, 1, 1, 1)
    out = {(e, s): encrypt(same, np.array([0, 1, 500, 9000]), e, s) for e in (0, 1) for s in (0, 1)}
    for value in out.values():  # rows of one mini-batch share its key, whatever their ids
        assert all(torch.equal(value[0], row) for row in value)
    distinct = {tuple(v[0].flatten().tolist()) for v in out.values()}
    assert len(distinct) == 4  # every (epoch, step) its own key
    again = worker_side_encryption(scenario, get_preset("smoke"), str(key_path))
    assert torch.equal(again(same, np.arange(4), 1, 1), out[(1, 1)])
    policy = PolicySpec("per-minibatch", key_batch_size=8).build()
    test_labels = policy.labels(np.array([0, 7, 8]), "test")
    assert test_labels.tolist() == ["batch/test/0", "batch/test/0", "batch/test/1"]
    step_key = le(load_key(key_path)).transform(policy.step_label(0, 0))
    assert torch.equal(step_key.with_grad(same, None), out[(0, 0)])
