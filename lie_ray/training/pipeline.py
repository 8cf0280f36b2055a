"""The Ray Data pipelines that feed one scenario's training.

Train: plain images -> random crop + flip -> [encryption] -> workers (one fused task per
       block, every epoch).
Test:  plain images -> [encryption, once per trial] -> workers.

Encryption happens in Ray Data for non-adversarial encrypted scenarios. Adversarial scenarios
need the PLAIN image in the worker (the attack perturbs it, then encrypts on the device inside
the attack loop), and so does a policy that keys each mini-batch as it is trained on
(``per-minibatch``): their train pipeline stops after augmentation.
"""

from __future__ import annotations

import ray.data

from lie_ray.data.cifar import defender_part, load_split
from lie_ray.data.dataset import to_ray_dataset
from lie_ray.encryption.run import encrypt_dataset
from lie_ray.keys.policies import PolicySpec
from lie_ray.scenarios import Scenario
from lie_ray.training.augment import augment_batch
from lie_ray.training.settings import TrainSettings

# Rows per block: each block is one Ray Data task per epoch, and the executor's scheduling
# loop waits up to 0.1 s for its tasks, so small blocks cap ingest (bench/ingest.py: 512-row
# blocks gave about 10,000 encrypted images/s at 1 CPU, 2,048-row blocks 27,000). A block is
# 6 MB.
ROWS_PER_BLOCK = 2048


def build_datasets(
    scenario: Scenario, settings: TrainSettings, data_dir: str, key_path: str | None
) -> dict[str, ray.data.Dataset]:
    train = defender_part(
        load_split(data_dir, "train"), settings.attacker_holdout, settings.train_limit
    )
    test = load_split(data_dir, "test", limit=settings.test_limit)
    train_ds = (
        to_ray_dataset(train, rows_per_block=ROWS_PER_BLOCK)
        .randomize_block_order()
        .map_batches(augment_batch, batch_format="numpy", num_cpus=0.5)
    )
    test_ds = to_ray_dataset(test, rows_per_block=ROWS_PER_BLOCK)
    if scenario.encrypted:
        spec = PolicySpec(scenario.key_policy, settings.key_batch_size)
        transform = scenario.transform_spec()
        if not (scenario.adversarial or spec.build().encrypts_on_worker):
            train_ds = _encrypted(train_ds, key_path, spec, "train", transform)
        # The test set is the same every epoch: encrypt it once, not once per epoch.
        test_ds = _encrypted(test_ds, key_path, spec, "test", transform).materialize()
    return {"train": train_ds, "test": test_ds}


def _encrypted(dataset, key_path, spec, split, transform) -> ray.data.Dataset:
    # Tasks, not an actor pool: the train pipeline runs again every epoch, and a new pool of
    # actors every epoch cost seconds of start-up each time (bench/ingest.py).
    return encrypt_dataset(
        dataset, key_path, spec, split, actors=None, num_cpus=0.5, transform=transform
    )
