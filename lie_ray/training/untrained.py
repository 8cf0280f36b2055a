"""What 'lie-ray train' leaves behind (checkpoints with their run records, training.parquet),
made in a second without training: untrained networks, for benchmarks and tests of the
evaluation, which need real checkpoints of the real layout but not trained weights."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from lie_ray.infra.checkpoints import META_FILE, STATE_FILE
from lie_ray.keys import Key
from lie_ray.models import build_model
from lie_ray.scenarios import Scenario
from lie_ray.training.record import training_record
from lie_ray.training.settings import TrainSettings
from lie_ray.training.worker import model_config, transform_meta

SETTINGS = TrainSettings(width=4, adaptation_channels=8, epochs=1)
NO_DATA = {"directory": "", "files": {}}


def write_runs(
    directory: Path,
    scenarios: list[Scenario],
    key: Key | None = None,
    settings: TrainSettings = SETTINGS,
) -> list[dict]:
    """A checkpoint per scenario under ``directory`` and ``directory/training.parquet``;
    returns its rows. ``key``: the key the encrypted scenarios claim to be trained with."""
    rows = []
    for scenario in scenarios:
        fingerprint = key.fingerprint if scenario.encrypted else None
        record = training_record(scenario, settings, fingerprint, NO_DATA)
        model = model_config(scenario, settings)
        checkpoint = directory / scenario.name
        checkpoint.mkdir(parents=True, exist_ok=True)
        torch.save({"model": build_model(**model).state_dict()}, checkpoint / STATE_FILE)
        (checkpoint / META_FILE).write_text(
            json.dumps(
                {
                    "scenario": scenario.name,
                    "model": model,
                    "key_fingerprint": fingerprint or "",
                    "transform": transform_meta(scenario, settings),
                    "record": record,
                    "run_id": record["run_id"],
                    "epoch": settings.epochs,
                }
            )
        )
        definition = record["scenario"]
        rows.append(
            {
                "scenario": scenario.name,
                "encrypted": scenario.encrypted,
                "key_policy": scenario.key_policy or "",
                "adversarial": scenario.adversarial,
                "checkpoint": str(checkpoint),
                "epochs": settings.epochs,
                "train_error": 0.5,
                "test_error": 0.5,
                "key_fingerprint": fingerprint or "",
                "transform": definition["transform"]["name"] if scenario.encrypted else "none",
                "key_batch_size": definition["key_batch_size"] or 0,
                "run_id": record["run_id"],
                "record": json.dumps(record),
            }
        )
    pq.write_table(pa.Table.from_pylist(rows), directory / "training.parquet")
    return rows
