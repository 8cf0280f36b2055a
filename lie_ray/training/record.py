"""A trained scenario's run record: what defines the network a checkpoint holds.

Built once by the training driver, written into every checkpoint's ``meta.json`` and carried
into ``training.parquet`` (column ``record``); evaluation rebuilds the defender (transform,
key policy, key-batch size) from it, never from a default. ``run_id`` names the Ray Train run
(``<scenario>-<run_id[:12]>``): change the scenario's transform, its key, the data or a
setting that decides the weights, and it is a different run, trained anew, never a reused
checkpoint of another definition.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lie_ray.infra import provenance
from lie_ray.keys.policies import GROUPED
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import ADV_PLAIN_AUTOGRAD, TrainSettings
from lie_ray.training.worker import transform_meta

# Settings that say how a run is executed, not what it learns: they are recorded, but a run
# resumed with another value is still the same run.
EXECUTION_SETTINGS = ("gpu", "compile", "torch_threads", "max_concurrent_trials")
# How long to train: a run asked for more epochs continues from its last checkpoint (the
# checkpoint says which epoch it holds), so it stays the same run.
LENGTH_SETTINGS = ("epochs",)
# Settings that live in the scenario's definition once applied (its block size, its policy's
# key-batch size, the --pgd-* overrides of its adversarial training).
DEFINITION_SETTINGS = (
    "block_size",
    "key_batch_size",
    "pgd_steps",
    "pgd_step_size",
    "pgd_eps",
    "adv_attack",
)


def scenario_definition(scenario: Scenario, settings: TrainSettings) -> dict[str, Any]:
    """The scenario with every default resolved: transform, block size, variant, key policy
    and its key-batch size, adversarial-training attack (and how it meets the cipher)."""
    transform = transform_meta(scenario, settings) if scenario.encrypted else None
    return {
        "name": scenario.name,
        "encrypted": scenario.encrypted,
        "key_policy": scenario.key_policy if scenario.encrypted else None,
        "key_batch_size": settings.key_batch_size if scenario.key_policy in GROUPED else None,
        "transform": transform,
        # The cipher's backward in the training attack (--adv-attack): none without a cipher.
        "adversarial_training": (
            {
                "attack": settings.adv_attack if scenario.encrypted else ADV_PLAIN_AUTOGRAD,
                "eps": scenario.eps,
                "step_size": scenario.step_size,
                "steps": scenario.steps,
            }
            if scenario.adversarial
            else None
        ),
    }


def training_record(
    scenario: Scenario, settings: TrainSettings, key_fingerprint: str | None, data: dict[str, Any]
) -> dict[str, Any]:
    """The run record of one scenario's training (JSON-able, no key material)."""
    record = {
        "kind": "training",
        "scenario": scenario_definition(scenario, settings),
        "settings": dataclasses.asdict(settings),
        "key_fingerprint": key_fingerprint if scenario.encrypted else None,
        "data": data,
        "code": provenance.code(),
    }
    return {**record, "run_id": run_id(record)}


def run_id(record: dict[str, Any]) -> str:
    """The digest of what decides the trained weights (not the code version, not how the run
    was executed, not how many epochs it has run so far)."""
    deciding = {
        k: v
        for k, v in record["settings"].items()
        if k not in EXECUTION_SETTINGS + LENGTH_SETTINGS + DEFINITION_SETTINGS
    }
    return provenance.digest(
        {
            "scenario": record["scenario"],
            "settings": deciding,
            "key_fingerprint": record["key_fingerprint"],
            "data": record["data"]["files"],
            "limits": [record["settings"]["train_limit"], record["settings"]["test_limit"]],
        }
    )


def run_name(record: dict[str, Any]) -> str:
    """The Ray Train run of a record: the scenario's name and its run id's first 12 digits."""
    return f"{record['scenario']['name']}-{record['run_id'][:12]}"
