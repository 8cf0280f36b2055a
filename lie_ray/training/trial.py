"""One Tune trial per scenario; each trial builds and fits a Ray Train ``TorchTrainer``.

Ray Train V2 trainers are not Tune trainables (RAY_NOTES.md), so the trial is a plain function
that builds the scenario's Ray Data pipelines and its trainer, with ``TuneReportCallback``
forwarding rank 0's reports to Tune. The Train run is named after the scenario and the key's
fingerprint, so fitting again (after a crash, or ``lie-ray train`` run a second time) resumes
from its latest checkpoint; a different key is a different run.

The trial config holds only plain settings, paths and fingerprints; the key FILE's path is the
only way to the key, and workers and actors open it themselves.
"""
from __future__ import annotations

import ray.data
import ray.train
from ray.data import ExecutionOptions, ExecutionResources
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback

from lie_ray.presets import DATA_CPUS_PER_TRIAL, TrainSettings
from lie_ray.scenarios import Scenario
from lie_ray.training.pipeline import build_datasets
from lie_ray.training.worker import train_func


def run_name(scenario: Scenario, key_fingerprint: str | None) -> str:
    return scenario.name if not scenario.encrypted else f"{scenario.name}-{key_fingerprint}"


def data_config() -> ray.train.DataConfig:
    """Split the training stream over workers; hand every worker the whole test set (rank 0
    evaluates all of it, so no test image is dropped to even out shards). Each pipeline gets at
    most one CPU, so concurrent trials cannot flood a small machine with Ray Data tasks."""
    limited = ExecutionOptions(resource_limits=ExecutionResources(cpu=DATA_CPUS_PER_TRIAL))
    return ray.train.DataConfig(datasets_to_split=["train"],
                                execution_options={"train": limited, "test": limited})


def train_scenario(config: dict) -> None:
    """Tune function trainable: train ``config['scenario']`` to completion (or resume it)."""
    scenario, settings = Scenario(**config["scenario"]), TrainSettings(**config["settings"])
    key_path = config["key_path"] if scenario.encrypted else None
    # Tune's table shows per-epoch progress; per-trial Ray Data bars would interleave unreadably.
    ray.data.DataContext.get_current().enable_progress_bars = False
    trainer = TorchTrainer(
        train_func,
        train_loop_config={"scenario": config["scenario"], "settings": config["settings"],
                           "key_path": key_path,
                           "key_fingerprint": config["key_fingerprint"] if key_path else None},
        scaling_config=ray.train.ScalingConfig(num_workers=settings.num_workers,
                                               use_gpu=config["use_gpu"]),
        datasets=build_datasets(scenario, settings, config["data_dir"], key_path),
        dataset_config=data_config(),
        run_config=ray.train.RunConfig(
            name=run_name(scenario, config["key_fingerprint"]),
            storage_path=config["train_storage"],
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=config["max_failures"]),
            callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
