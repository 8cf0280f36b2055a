"""CIFAR-10 loading from the real subset, clear errors on bad directories, Parquet shards."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest

from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import read_shards, sorted_by_id, to_ray_dataset, write_shards
from lie_ray.errors import LieRayError


def test_real_subset_counts_layout_and_labels(cifar_dir):
    train, test = load_split(cifar_dir, "train"), load_split(cifar_dir, "test")
    assert train.images.shape == (5438, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (1017, 32, 32, 3) and len(test.labels) == 1017
    assert train.labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert test.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    with open(cifar_dir / "test_batch", "rb") as handle:
        raw = pickle.load(handle, encoding="latin1")["data"][0]
    # Row layout is 1024 R, 1024 G, 1024 B, each 32x32 row-major.
    np.testing.assert_array_equal(test.images[0, :, :, 1], raw[1024:2048].reshape(32, 32))
    np.testing.assert_array_equal(train.ids[:3], [0, 1, 2])


def test_parent_directory_is_accepted(cifar_dir):
    assert len(load_split(cifar_dir.parent, "test").labels) == 1017


@pytest.fixture
def data_copy(tmp_path, cifar_dir):
    copy = tmp_path / "cifar-10-batches-py"
    shutil.copytree(cifar_dir, copy)
    for path in copy.iterdir():
        path.chmod(0o644)
    return copy


def test_limit_reads_only_the_files_holding_the_rows(cifar_dir, data_copy):
    full = load_split(cifar_dir, "train")
    for name in ("data_batch_3", "data_batch_4", "data_batch_5"):
        (data_copy / name).unlink()
    first = 1102  # images in the real subset's data_batch_1
    part = load_split(data_copy, "train", limit=first + 300)  # spans data_batch_1 and _2
    np.testing.assert_array_equal(part.images, full.images[: first + 300])
    np.testing.assert_array_equal(part.labels, full.labels[: first + 300])
    assert part.images.flags.c_contiguous and part.images.base is None  # owns just its rows
    test = load_split(cifar_dir, "test", limit=5)
    np.testing.assert_array_equal(test.images, load_split(cifar_dir, "test").images[:5])
    assert test.images.base is None  # a copy of 5 rows, not a view holding the whole file
    with pytest.raises(LieRayError, match="data_batch_3 is missing"):
        load_split(data_copy, "train", limit=len(full.labels))


def test_missing_directory(tmp_path):
    with pytest.raises(LieRayError, match=f"no CIFAR-10 data at {tmp_path / 'nope'}.*--download"):
        load_split(tmp_path / "nope", "train")


def test_missing_batch_file(data_copy):
    (data_copy / "data_batch_3").unlink()
    with pytest.raises(LieRayError, match="data_batch_3 is missing"):
        load_split(data_copy, "train")


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_batch_file(data_copy, damage):
    target = data_copy / "test_batch"
    blob = target.read_bytes()
    target.write_bytes(blob[: len(blob) // 3] if damage == "truncate" else b"\x00garbage" * 50)
    with pytest.raises(LieRayError, match="test_batch is corrupt or truncated"):
        load_split(data_copy, "test")


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((4, 100), dtype=np.uint8), "shape \\(4, 100\\)"),
        (np.zeros((4, 3072), dtype=np.float32), "dtype float32"),
    ],
)
def test_wrong_image_shape_or_dtype(data_copy, data, message):
    with open(data_copy / "test_batch", "wb") as handle:
        pickle.dump({"data": data, "labels": [0] * len(data)}, handle)
    with pytest.raises(LieRayError, match=message):
        load_split(data_copy, "test")


def test_empty_split(data_copy):
    with open(data_copy / "test_batch", "wb") as handle:
        pickle.dump({"data": np.zeros((0, 3072), dtype=np.uint8), "labels": []}, handle)
    with pytest.raises(LieRayError, match="holds no images"):
        load_split(data_copy, "test")


def test_ray_dataset_parquet_round_trip(ray_cluster, cifar_dir, tmp_path):
    split = load_split(cifar_dir, "test").head(300)
    dataset = to_ray_dataset(split, rows_per_block=64)
    assert dataset.schema().names == ["id", "image", "label"]
    write_shards(dataset, tmp_path / "shards")
    assert len(list((tmp_path / "shards").glob("*.parquet"))) >= 2
    back = sorted_by_id(read_shards(tmp_path / "shards").take_batch(1000, batch_format="numpy"))
    np.testing.assert_array_equal(back["id"], split.ids)
    np.testing.assert_array_equal(back["image"], split.images)
    np.testing.assert_array_equal(back["label"], split.labels)
    with pytest.raises(LieRayError, match="no Parquet shards"):
        read_shards(tmp_path / "empty")
