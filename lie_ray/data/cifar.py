"""CIFAR-10 from the standard "python version" directory, any number of images per file.

The project's own data (``../shared/data/cifar-10-batches-py``) is a genuine subset of about
1,000 images per file, so nothing here assumes 10,000. Problems with the files are reported in
one line naming the file and what was expected.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.infra import provenance

DIRECTORY_NAME = "cifar-10-batches-py"
SPLIT_FILES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
DEFAULT_DATA_DIR = os.environ.get("LIE_RAY_DATA", "../shared/data/cifar-10-batches-py")
IMAGE_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class Split:
    """One split in memory: uint8 NHWC images, int64 labels, and stable int64 ids (row order)."""

    name: str
    images: np.ndarray
    labels: np.ndarray

    @property
    def ids(self) -> np.ndarray:
        return np.arange(len(self.labels), dtype=np.int64)

    def head(self, limit: int | None) -> Split:
        """The first ``limit`` rows (all when None): ids stay the same, so keys do too."""
        if limit is None:
            return self
        return Split(self.name, self.images[:limit], self.labels[:limit])


def held_out(train: Split, holdout: int) -> tuple[Split, Split]:
    """(what the defender may train on, the attacker's own images): the last ``holdout``
    images of the train split are the attacker's, never trained on and never attacked, so a
    fit on them is not flattered by images the model has fitted. A split too small to spare
    them (the defender would keep fewer than half) is refused in one line."""
    kept = len(train.labels) - holdout
    if holdout < 0 or kept < holdout:
        raise LieRayError(
            f"the train split has {len(train.labels)} images, too few to hold out "
            f"{holdout} for the attacker and train on the rest: pass a smaller "
            "--attacker-holdout (at most half the train split)"
        )
    return train.head(kept), Split(
        f"{train.name}-held-out", train.images[kept:], train.labels[kept:]
    )


def defender_part(train: Split, holdout: int, limit: int | None) -> Split:
    """What the defender trains on (and its train error is measured on): the first ``limit``
    images (all when None) of the train split less the attacker's held-out part."""
    kept, _ = held_out(train, holdout)
    if limit is not None and limit > len(kept.labels):
        raise LieRayError(
            f"--train-limit {limit} reaches into the {holdout} images held out for the "
            f"attacker (the defender may train on {len(kept.labels)}): pass --train-limit "
            f"<= {len(kept.labels)} or a smaller --attacker-holdout"
        )
    return kept.head(limit)


def resolve_data_dir(path: str | os.PathLike, download: bool = False) -> Path:
    """Accept the batches directory itself or its parent; download full CIFAR-10 if asked."""
    root = Path(path).expanduser().resolve()  # absolute: Ray workers run in other directories
    for candidate in (root, root / DIRECTORY_NAME):
        if (candidate / "test_batch").is_file() or (candidate / "data_batch_1").is_file():
            return candidate
    if download:
        return _download(root)
    raise LieRayError(
        f"no CIFAR-10 data at {root}: expected a '{DIRECTORY_NAME}' directory with "
        "data_batch_1..5 and test_batch; pass --data DIR, or --download to fetch "
        "full CIFAR-10"
    )


def load_split(
    path: str | os.PathLike, split: str, download: bool = False, limit: int | None = None
) -> Split:
    """Load ``train`` (data_batch_1..5, concatenated in order) or ``test`` (test_batch).

    ``limit`` keeps the first ``limit`` rows, as ``Split.head`` does, but reads only the files
    that hold them and lays out only those rows: 5,438 images of full CIFAR-10 load in a tenth
    of the time and memory of all 50,000.
    """
    _check_split_name(split)
    directory = resolve_data_dir(path, download)
    parts, rows = [], 0
    for name in SPLIT_FILES[split]:
        if limit is not None and rows >= limit:
            break
        parts.append(_read_batch(directory / name, None if limit is None else limit - rows))
        rows += len(parts[-1][1])
    _check_not_empty(split, directory, rows)
    if len(parts) == 1:  # the test split: concatenating would only copy it
        return Split(split, *parts[0])
    return Split(
        split, np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    )


def data_record(path: str | os.PathLike, **limits: int | None) -> dict:
    """What a run record says of the data: the batches directory, each batch file's SHA-256
    and the limits (``lie_ray.infra.provenance``)."""
    directory = resolve_data_dir(path)
    names = [name for split in ("train", "test") for name in SPLIT_FILES[split]]
    return provenance.files_record(directory, names + ["batches.meta"], **limits)


def check_dataset(
    path: str | os.PathLike, download: bool = False, splits: tuple[str, ...] = ("train", "test")
) -> Path:
    """``resolve_data_dir`` plus a full check of every batch file of ``splits``.

    Jobs call this in the driver before Ray starts, so a missing, corrupt, truncated, misshapen
    or empty batch is a one-line error rather than a failure inside a Ray worker. It reads each
    file once and keeps nothing (about half a second for full CIFAR-10). Returns the batches
    directory, like ``resolve_data_dir``.
    """
    directory = resolve_data_dir(path, download)
    for split in splits:
        _check_split_name(split)
        count = sum(len(_read_batch(directory / name)[1]) for name in SPLIT_FILES[split])
        _check_not_empty(split, directory, count)
    return directory


def _check_split_name(split: str) -> None:
    if split not in SPLIT_FILES:
        raise LieRayError(f"unknown split {split!r}: use 'train' or 'test'")


def _check_not_empty(split: str, directory: Path, count: int) -> None:
    if count == 0:
        raise LieRayError(
            f"the {split} split in {directory} holds no images: the batch files "
            "are empty; restore the dataset (or pass --download)"
        )


def _read_batch(path: Path, keep: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A checked batch file's first ``keep`` rows (all when None): NHWC images, int64 labels."""
    if not path.is_file():
        raise LieRayError(
            f"CIFAR-10 batch file {path} is missing: the directory must hold "
            "data_batch_1..5 and test_batch (re-download with --download)"
        )
    try:
        with open(path, "rb") as handle:
            record = pickle.load(handle, encoding="latin1")
    except Exception as err:  # truncated, corrupt or not a pickle at all
        raise LieRayError(
            f"CIFAR-10 batch file {path} is corrupt or truncated "
            f"({type(err).__name__}): replace it with a fresh copy"
        ) from None
    if not isinstance(record, dict) or "data" not in record or "labels" not in record:
        raise LieRayError(
            f"CIFAR-10 batch file {path} lacks 'data' and 'labels': not a CIFAR-10 "
            "python-version batch; replace it with a fresh copy"
        )
    try:
        data = np.asarray(record["data"])
        labels = np.asarray(record["labels"], dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise LieRayError(
            f"CIFAR-10 batch file {path} holds 'data' or 'labels' that are not "
            "arrays of numbers: replace it with a fresh copy"
        ) from None
    pixels = int(np.prod(IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise LieRayError(
            f"CIFAR-10 batch file {path} holds data of shape {data.shape} and dtype "
            f"{data.dtype}; expected uint8 rows of {pixels} bytes (32x32x3): "
            "replace it with the python-version CIFAR-10 batch"
        )
    if len(labels) != len(data) or (labels.size and (labels.min() < 0 or labels.max() > 9)):
        raise LieRayError(
            f"CIFAR-10 batch file {path} has {len(labels)} labels for {len(data)} "
            "images, or labels outside 0..9: replace it with a fresh copy"
        )
    # Rows are 1024 R, 1024 G, 1024 B bytes; NHWC is what the cipher's NumPy path takes.
    images = data[:keep].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels[:keep]


def _download(root: Path) -> Path:
    """Full CIFAR-10 through torchvision (needs internet); returns the batches directory."""
    from torchvision.datasets import CIFAR10

    parent = root.parent if root.name == DIRECTORY_NAME else root
    try:
        CIFAR10(root=str(parent), train=True, download=True)
    except Exception as err:
        raise LieRayError(
            f"could not download CIFAR-10 into {parent} ({err}); check the network "
            "or pass --data with a local copy"
        ) from None
    return parent / DIRECTORY_NAME
