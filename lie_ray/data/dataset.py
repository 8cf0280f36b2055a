"""CIFAR splits as Ray Datasets with a stable ``id`` column, and their Parquet shards.

Every row carries ``id`` from the moment it is loaded: key policies, evaluation tables and
joins all key on it, because Ray Data keeps neither order nor batch boundaries.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import ray
import ray.data
from ray.data.extensions import ArrowTensorArray

from lie_ray.data.cifar import Split
from lie_ray.errors import LieRayError
from lie_ray.infra import atomic, storage

ROWS_PER_BLOCK = 512


def split_to_table(split: Split) -> pa.Table:
    return pa.table(
        {"id": split.ids, "image": ArrowTensorArray.from_numpy(split.images), "label": split.labels}
    )


def to_ray_dataset(split: Split, rows_per_block: int = ROWS_PER_BLOCK) -> ray.data.Dataset:
    """A Dataset with columns ``id`` (int64), ``image`` (uint8 32x32x3) and ``label`` (int64),
    in blocks of ``rows_per_block`` rows so that actor pools have work to share."""
    table = split_to_table(split)
    blocks = [
        table.slice(start, rows_per_block) for start in range(0, table.num_rows, rows_per_block)
    ]
    return ray.data.from_arrow(blocks)


def write_shards(dataset: ray.data.Dataset, out_dir: str | os.PathLike) -> Path | str:
    """Write ``dataset`` as Parquet shards into ``out_dir``, replacing it only when complete.

    ``out_dir`` may be a storage URI: Ray Data's tasks then write straight to it from whichever
    node runs them (an object store has no rename; callers mark completion with a manifest)."""
    if storage.is_uri(out_dir):
        filesystem, path = storage.resolve(out_dir)
        dataset.write_parquet(path, filesystem=filesystem, mode="overwrite")
        return out_dir
    target = Path(out_dir)
    with atomic.staged_directory(target) as staging:
        dataset.write_parquet(str(staging), mode="overwrite")
    return target


def read_shards(directory: str | os.PathLike) -> ray.data.Dataset:
    source = Path(directory)
    if not source.is_dir() or not any(source.glob("*.parquet")):
        raise LieRayError(f"no Parquet shards in {source}: write them with 'lie-ray encrypt' first")
    return ray.data.read_parquet(str(source))


def sorted_by_id(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reorder a whole-dataset batch by ``id`` (Ray Data does not preserve order)."""
    order = np.argsort(batch["id"], kind="stable")
    return {name: column[order] for name, column in batch.items()}
