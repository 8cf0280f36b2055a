"""Generated CIFAR-10 layouts (bench/scale.py's data): the real files' format, loadable,
deterministic, written whole or not at all."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

from lie_ray.data.cifar import SPLIT_FILES, load_split
from lie_ray.data.synthetic import LABEL_NAMES, main, write_dataset, write_py2_pickle
from lie_ray.errors import LieRayError

FILES = SPLIT_FILES["train"] + SPLIT_FILES["test"] + ["batches.meta"]


@pytest.mark.parametrize("name", ["test_batch", "batches.meta"])
def test_writer_reproduces_the_real_files_byte_for_byte(cifar_dir, name):
    raw = (cifar_dir / name).read_bytes()
    out = io.BytesIO()
    write_py2_pickle(pickle.loads(raw, encoding="latin1"), out, memo=name == "batches.meta")
    assert out.getvalue() == raw


def test_generated_layout_loads_with_counts_labels_and_structure(tmp_path):
    directory = write_dataset(tmp_path / "a", train=1000, test=200, seed=3)
    train, test = load_split(tmp_path / "a", "train"), load_split(directory, "test")
    assert train.images.shape == (1000, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (200, 32, 32, 3) and test.labels.dtype == np.int64
    assert np.bincount(train.labels, minlength=10).tolist() == [100] * 10  # balanced
    assert np.bincount(test.labels, minlength=10).tolist() == [20] * 10
    # Structure, not noise: neighbouring pixels are close, and classes differ in mean colour.
    pixels = train.images.astype(np.float32)
    assert np.abs(np.diff(pixels, axis=2)).mean() < 0.25 * np.abs(pixels - pixels.mean()).mean()
    means = np.stack([pixels[train.labels == c].mean(axis=(0, 1, 2)) for c in range(10)])
    assert np.ptp(means, axis=0).max() > 40
    with open(directory / "data_batch_1", "rb") as handle:  # readers using encoding="bytes"
        record = pickle.load(handle, encoding="bytes")
    assert list(record) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert record[b"batch_label"] == b"training batch 1 of 5" and len(record[b"labels"]) == 200
    with open(directory / "batches.meta", "rb") as handle:
        meta = pickle.load(handle, encoding="latin1")
    assert meta == {"num_cases_per_batch": 200, "label_names": LABEL_NAMES, "num_vis": 3072}


def test_same_seed_same_bytes_other_seed_other_images(tmp_path):
    first = write_dataset(tmp_path / "a", train=50, test=10, seed=7)
    again = write_dataset(tmp_path / "b", train=50, test=10, seed=7)
    other = write_dataset(tmp_path / "c", train=50, test=10, seed=8)
    for name in FILES:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    assert (first / "test_batch").read_bytes() != (other / "test_batch").read_bytes()


def test_existing_data_is_never_replaced(tmp_path):
    directory = write_dataset(tmp_path, train=5, test=1)
    before = {name: (directory / name).read_bytes() for name in FILES}
    with pytest.raises(LieRayError, match="already exists"):
        write_dataset(tmp_path, train=10, test=2)
    assert {name: (directory / name).read_bytes() for name in FILES} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cifar-10-batches-py"]  # no leftovers


def test_cli_writes_and_rejects_bad_counts_in_one_line(tmp_path, capsys):
    main([str(tmp_path / "ok"), "--train", "10", "--test", "2"])
    assert "wrote 10 train and 2 test images" in capsys.readouterr().out
    assert len(load_split(tmp_path / "ok", "train").labels) == 10
    for args in (["--train", "3"], ["--test", "0"], ["--train", "many"]):
        with pytest.raises(SystemExit) as exit_info:
            main([str(tmp_path / "bad"), *args])
        error = capsys.readouterr().err
        assert exit_info.value.code == 2 and error.startswith("error: "), error
        assert len(error.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
