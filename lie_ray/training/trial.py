"""One Tune trial per scenario; each trial builds and fits a Ray Train ``TorchTrainer``.

Ray Train V2 trainers are not Tune trainables (RAY_NOTES.md), so the trial is a plain function
that builds the scenario's Ray Data pipelines and its trainer, with ``TuneReportCallback``
forwarding rank 0's reports to Tune. The Train run is named after the scenario and its run id
(``lie_ray.training.record``), so fitting again (after a crash, or ``lie-ray train`` run a
second time) resumes from its latest checkpoint; a different key, transform, data or setting
is a different run.

The trial config holds only the scenario's name; records, settings, paths and the key's
fingerprint come through ``tune.with_parameters`` as one frozen ``TrialJob``. The key FILE's
path is the only way to the key, and workers and actors open it themselves.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import pyarrow.fs
import ray.data
import ray.train
from ray import tune
from ray.data import ExecutionOptions, ExecutionResources
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import CHECKPOINT_PATH_KEY, TuneReportCallback

from lie_ray.infra.checkpoints import META_FILE, STATE_FILE
from lie_ray.infra.console import quiet_trial
from lie_ray.infra.storage import join, resolve
from lie_ray.scenarios import Scenario
from lie_ray.training.pipeline import build_datasets
from lie_ray.training.progress import ALREADY_TRAINED
from lie_ray.training.record import run_name
from lie_ray.training.settings import DATA_CPUS_PER_TRIAL, TrainSettings, data_cpus
from lie_ray.training.worker import train_func


def data_config(cpus: float = DATA_CPUS_PER_TRIAL) -> ray.train.DataConfig:
    """Split the training stream over workers; hand every worker the whole test set (rank 0
    evaluates all of it, so no test image is dropped to even out shards). Each pipeline gets at
    most ``cpus`` CPUs, so concurrent trials cannot flood a small machine with Ray Data tasks."""
    limited = ExecutionOptions(resource_limits=ExecutionResources(cpu=cpus))
    return ray.train.DataConfig(
        datasets_to_split=["train"], execution_options={"train": limited, "test": limited}
    )


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one training run shares: the scenarios and their run records by
    name, the settings, where the key file, the data and the runs are, and how to run. Plain
    values and a key's fingerprint, never a key."""

    scenarios: dict[str, Scenario]
    run_records: dict[str, dict]
    settings: TrainSettings
    key_path: str | None  # the key FILE's location: workers open it themselves
    key_fingerprint: str | None
    data_dir: str
    train_storage: str
    use_gpu: bool
    max_failures: int
    quiet: bool


def train_scenario(config: dict, job: TrialJob) -> None:
    """Tune function trainable: train the scenario named ``config['scenario']`` (Tune's grid,
    the only thing in its config) to completion, or resume it."""
    scenario, settings = job.scenarios[config["scenario"]], job.settings
    run_record = job.run_records[scenario.name]
    if job.quiet:
        quiet_trial()
    name = run_name(run_record)
    checkpoints = run_checkpoints(join(job.train_storage, name), run_record["run_id"])
    finished = finished_checkpoint(checkpoints, settings.epochs)
    if finished is not None:
        # Trained to the end already (a sweep resumed, or the same command run again): hand
        # Tune the final checkpoint's metrics instead of starting workers that have nothing
        # to do. Tune's own experiment state may lag by seconds, so this is the safe check.
        path, metrics = finished  # the driver's TrainingProgress says so on the console
        tune.report({**metrics, CHECKPOINT_PATH_KEY: path, ALREADY_TRAINED: True})
        return
    key_path = job.key_path if scenario.encrypted else None
    # The driver prints per-epoch progress; per-trial Ray Data bars would interleave unreadably.
    ray.data.DataContext.get_current().enable_progress_bars = False
    trainer = TorchTrainer(
        train_func,
        train_loop_config={
            "scenario": dataclasses.asdict(scenario),
            "settings": dataclasses.asdict(settings),
            "key_path": key_path,
            "key_fingerprint": job.key_fingerprint if key_path else None,
            "run_record": run_record,
            # Ray Train restores its own latest checkpoint only when its
            # controller recorded it before the run stopped; a Ctrl-C or
            # SIGTERM right after an epoch's report often lands first, and the
            # trial restarted at epoch 0 (3 of 6 signalled runs). The worker
            # starts from whichever of the two is further along.
            "resume_from": checkpoints[-1][0] if checkpoints else None,
            "quiet": job.quiet,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=settings.num_workers, use_gpu=job.use_gpu
        ),
        datasets=build_datasets(scenario, settings, job.data_dir, key_path),
        dataset_config=data_config(data_cpus(settings.num_workers, job.use_gpu)),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=job.train_storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            failure_config=ray.train.FailureConfig(max_failures=job.max_failures),
            # Train's own INFO lines (worker group start-up, checkpoint reports) stay in its
            # log files unless --verbose; the per-epoch line comes from the driver.
            logging_config=ray.train.LoggingConfig(log_level="WARNING" if job.quiet else "INFO"),
            callbacks=[TuneReportCallback()],
        ),
    )
    trainer.fit()


def run_checkpoints(run_path: str, run_id: str) -> list[tuple[str, dict]]:
    """The run's complete checkpoints made for the run record ``run_id``, as (path, metrics),
    oldest epoch first.

    Reads only ``meta.json`` (metrics and fingerprints, never a key) through pyarrow's
    filesystems, so the run may live on local disk or in cloud storage alike. A checkpoint is
    complete once both its files are there: a worker writes them into a temporary directory
    and Ray Train copies it into storage inside ``ray.train.report``."""
    filesystem, root = resolve(run_path)  # a local path or a URI
    selector = pyarrow.fs.FileSelector(root, allow_not_found=True)
    found = []
    for info in filesystem.get_file_info(selector):
        if info.type != pyarrow.fs.FileType.Directory or not info.base_name.startswith(
            "checkpoint_"
        ):
            continue
        files = filesystem.get_file_info([f"{info.path}/{META_FILE}", f"{info.path}/{STATE_FILE}"])
        if any(file.type != pyarrow.fs.FileType.File for file in files):
            continue  # a checkpoint still being written, or from an older layout
        with filesystem.open_input_stream(files[0].path) as stream:
            meta = json.loads(stream.read())
        if meta.get("run_id") == run_id and isinstance(meta.get("epoch"), int):
            metrics = {
                k: v
                for k, v in meta.items()
                if k not in ("scenario", "model", "transform", "record")
            }
            found.append((join(run_path, info.base_name), metrics))
    return sorted(found, key=lambda checkpoint: checkpoint[1]["epoch"])


def finished_checkpoint(
    checkpoints: list[tuple[str, dict]], epochs: int
) -> tuple[str, dict] | None:
    """Of ``run_checkpoints``' answer, the checkpoint of the last epoch, if there is one."""
    finished = [c for c in checkpoints if c[1]["epoch"] == epochs]
    return finished[-1] if finished else None
