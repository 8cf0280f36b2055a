"""The encrypt job: CIFAR-10 in, encrypted Parquet shards out, through a Ray Data actor pool.

The key never travels: each actor receives the key FILE's path and loads the secret itself,
so nothing secret appears in Ray's task specs, dashboards or logs. Every output row records
which sub-key encrypted it (``key_label``), that sub-key's fingerprint and the master's.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from pathlib import Path

import numpy as np
import ray.data

from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import to_ray_dataset, write_shards
from lie_ray.errors import LieRayError
from lie_ray.infra import storage
from lie_ray.infra.images import save_grid
from lie_ray.keys import key_location, load_key
from lie_ray.keys.policies import PolicySpec
from lie_ray.transforms import TransformSpec

log = logging.getLogger("lie_ray")


class EncryptBatch:
    """Ray Data actor: loads the key once, then encrypts every batch it is handed with the
    scenario's transform (LE unless told otherwise)."""

    def __init__(
        self,
        key_path: str,
        policy: PolicySpec,
        split: str,
        transform: TransformSpec = TransformSpec(),
    ):
        self.key = transform.keyed(load_key(key_path))
        self.policy = policy.build()
        self.policy.check_key(self.key.key)
        self.split = split

    def __call__(
        self, batch: dict[str, np.ndarray], provenance: bool = True
    ) -> dict[str, np.ndarray]:
        """``provenance``: add which sub-key encrypted each row (the encrypt job's shards
        record it; training needs only id, image and label, and string columns cost)."""
        images = np.ascontiguousarray(batch["image"], dtype=np.uint8)
        encrypted, labels = self.policy.encrypt(self.key, images, batch["id"], self.split)
        if not provenance:
            return {"id": batch["id"], "image": encrypted, "label": batch["label"]}
        fingerprints = {label: self.key.transform(label).fingerprint for label in set(labels)}
        return {
            "id": batch["id"],
            "image": encrypted,
            "label": batch["label"],
            "key_label": labels.astype(str),
            "key_fingerprint": np.array([fingerprints[label] for label in labels]),
            "master_fingerprint": np.full(len(labels), self.key.fingerprint),
        }


def encrypt_rows(
    batch: dict[str, np.ndarray],
    key_path: str,
    policy: PolicySpec,
    split: str,
    transform: TransformSpec,
) -> dict[str, np.ndarray]:
    """Ray Data TASK function for training pipelines: id, image and label, encrypted. A
    pipeline that runs again every epoch would start a fresh actor pool every epoch (seconds
    each time); a task fuses with the augmentation before it, and its worker process keeps the
    loaded key for the next task (``_encrypter``)."""
    stamp = None if storage.is_uri(key_path) else os.stat(key_path).st_mtime_ns
    return _encrypter(key_path, stamp, policy, split, transform)(batch, provenance=False)


@functools.lru_cache(maxsize=8)
def _encrypter(
    key_path: str, stamp: int | None, policy: PolicySpec, split: str, transform: TransformSpec
) -> EncryptBatch:
    """One ``EncryptBatch`` per key file (and version of it) per worker process."""
    return EncryptBatch(key_path, policy, split, transform)


def encrypt_dataset(
    dataset: ray.data.Dataset,
    key_path: str | os.PathLike,
    policy: PolicySpec,
    split: str,
    actors: int | None = 2,
    batch_size: int = 256,
    num_cpus: float = 1,
    transform: TransformSpec = TransformSpec(),
) -> ray.data.Dataset:
    """Encrypt a Dataset with columns id/image/label in an actor pool of ``actors`` actors,
    adding each row's key provenance; or in tasks (``actors=None``: for pipelines that run
    once per epoch), keeping only id, image and label."""
    options = {
        "key_path": key_location(key_path),
        "policy": policy,
        "split": split,
        "transform": transform,
    }
    if actors is None:
        return dataset.map_batches(
            encrypt_rows,
            fn_kwargs=options,
            batch_size=batch_size,
            batch_format="numpy",
            num_cpus=num_cpus,
        )
    return dataset.map_batches(
        EncryptBatch,
        compute=ray.data.ActorPoolStrategy(size=actors),
        fn_constructor_kwargs=options,
        batch_size=batch_size,
        batch_format="numpy",
        num_cpus=num_cpus,
    )


def check_policy(policy: PolicySpec) -> None:
    """A policy the encrypt job can apply: one that keys images by id, not by training step."""
    if policy.build().encrypts_on_worker:
        raise LieRayError(
            f"the {policy.name} policy draws a key per training mini-batch, in "
            "training; 'lie-ray encrypt' has no mini-batches: pass --policy "
            "fixed, id-group or per-image"
        )


def run_encrypt(
    data_dir: str | os.PathLike,
    key_path: str | os.PathLike,
    policy: PolicySpec,
    out_dir: str | os.PathLike,
    actors: int = 2,
    limit: int | None = None,
    preview: str | os.PathLike | None = None,
    download: bool = False,
) -> dict:
    """Encrypt both splits into ``out_dir/{train,test}`` and write ``out_dir/manifest.json``.

    ``out_dir`` may be a storage URI (``s3://...``): the actors' write tasks put the shards
    there from whichever node they run on; the preview is drawn by this driver."""
    check_policy(policy)
    key = load_key(key_path)  # fail fast, in the driver, before any Ray work
    policy.build().check_key(key)
    out = str(out_dir) if storage.is_uri(out_dir) else Path(out_dir)
    manifest_location = storage.join(out, "manifest.json")
    storage.delete(manifest_location)  # written last: its presence means "complete"
    counts = {}
    for split_name in ("train", "test"):
        split = load_split(data_dir, split_name, download, limit=limit)
        log.info(
            "encrypting %d %s images with key %s, policy %s",
            len(split.labels),
            split_name,
            key.fingerprint,
            policy.name,
        )
        encrypted = encrypt_dataset(to_ray_dataset(split), key_path, policy, split_name, actors)
        write_shards(encrypted, storage.join(out, split_name))
        counts[split_name] = len(split.labels)
        if preview is not None and split_name == "test":
            shown = split.head(8)
            ciphertexts, _ = policy.build().encrypt(
                TransformSpec().keyed(key), shown.images, shown.ids, split_name
            )
            save_grid([shown.images, ciphertexts], preview)
    manifest = {
        "master_fingerprint": key.fingerprint,
        "block_size": key.block_size,
        "policy": policy.name,
        "key_batch_size": policy.key_batch_size,
        "rows": counts,
        "limit": limit,
    }
    storage.write_bytes(manifest_location, (json.dumps(manifest, indent=2) + "\n").encode())
    return manifest
