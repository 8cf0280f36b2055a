"""``lie-ray train``: a Tune grid over scenarios, then ``training.parquet``.

Storage layout under ``--out``:

    OUT/ray/train/<scenario>/...     Tune experiment: trial dirs, TensorBoard event files
    OUT/ray/runs/<run name>/...      Ray Train runs: checkpoints (resumable)
    OUT/training.parquet             one row per scenario

With ``--storage URI`` (a path or ``s3://...`` every node reaches), ``STORAGE/train`` and
``STORAGE/runs`` take the place of ``OUT/ray/...``; ``checkpoint`` in the table is then a URI.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import pyarrow as pa
from ray import tune

from lie_ray.data.cifar import data_record, defender_part, load_split, resolve_data_dir
from lie_ray.errors import LieRayError
from lie_ray.infra import atomic, interrupt, provenance
from lie_ray.infra import storage as storage_io
from lie_ray.infra.console import verbose
from lie_ray.infra.session import wants_gpu
from lie_ray.infra.storage import join, to_location
from lie_ray.keys import key_location
from lie_ray.scenarios import Scenario, key_for_scenarios
from lie_ray.training.capacity import concurrent_trials
from lie_ray.training.progress import TrainingProgress
from lie_ray.training.record import training_record
from lie_ray.training.settings import TRIAL_DRIVER_CPUS, TrainSettings
from lie_ray.training.trial import TrialJob, train_scenario

log = logging.getLogger("lie_ray")
EXPERIMENT = "train"


def run_training(
    scenarios: list[Scenario],
    settings: TrainSettings,
    data_dir: str | Path,
    out_dir: str | Path,
    key_path: str | Path | None,
    resume: bool = False,
    storage: str | None = None,
) -> pa.Table:
    """Train ``scenarios`` (one Tune trial each) and write ``OUT/training.parquet``.

    ``resume`` restores an interrupted Tune experiment: finished trials keep their results and
    are not run again, unfinished ones continue from their last checkpoint. ``storage`` (a path
    or URI such as ``s3://bucket/prefix``, reachable from every node) replaces ``OUT/ray``.
    """
    out = Path(out_dir).resolve()
    data = resolve_data_dir(data_dir)
    # The attacker's held-out part and the limit must fit the split: one line now, not a
    # failure inside every trial.
    defender_part(load_split(data, "train"), settings.attacker_holdout, settings.train_limit)
    # Reject a missing key, or one a policy cannot use, before any Ray work.
    key = key_for_scenarios(scenarios, key_path, settings.block_size, settings.key_batch_size)
    key_fingerprint = key.fingerprint if key is not None else None
    use_gpu = wants_gpu(settings.gpu)
    # Fails at once, in one line, when the cluster cannot hold a single trial.
    side_by_side = concurrent_trials(
        settings, use_gpu, len(scenarios), settings.max_concurrent_trials
    )
    log.info("training %d scenario(s), up to %d at once", len(scenarios), side_by_side)
    storage = storage or str(out / "ray")
    runs = join(storage, "runs")
    data_used = data_record(data, train_limit=settings.train_limit, test_limit=settings.test_limit)
    records = {s.name: training_record(s, settings, key_fingerprint, data_used) for s in scenarios}
    # Tune's config holds only the scenario's NAME (the grid): its table then shows the name,
    # and a trial's start prints one line of config. The rest reaches the trial through
    # tune.with_parameters (below).
    param_space = {"scenario": tune.grid_search([s.name for s in by_expected_cost(scenarios)])}
    job = TrialJob(
        scenarios={s.name: s for s in scenarios},
        run_records=records,
        settings=settings,
        key_path=key_location(key_path),
        key_fingerprint=key_fingerprint,
        data_dir=str(data),
        train_storage=runs,
        use_gpu=use_gpu,
        max_failures=2,
        quiet=not verbose(),
    )
    started = time.monotonic()
    trainable = tune.with_resources(
        tune.with_parameters(train_scenario, job=job),
        {"cpu": TRIAL_DRIVER_CPUS},
    )
    experiment = join(storage, EXPERIMENT)
    plan_file = join(storage, PLAN_FILE)
    if resume and tune.Tuner.can_restore(experiment) and same_plan(plan_file, records):
        log.info("resuming the training experiment at %s: finished trials are kept", experiment)
        tuner = tune.Tuner.restore(
            experiment, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(
                max_concurrent_trials=side_by_side,
                trial_name_creator=_trial_name,
                trial_dirname_creator=_trial_name,
            ),
            # Quiet: Tune prints nothing, TrainingProgress a line per epoch and trial and Tune's
            # table at the end; --verbose: Tune's status box, every config and result too.
            run_config=tune.RunConfig(
                name=EXPERIMENT,
                storage_path=storage,
                verbose=2 if verbose() else 0,
                failure_config=tune.FailureConfig(max_failures=1),
                callbacks=[TrainingProgress(settings.epochs, table=not verbose())],
            ),
        )
        storage_io.write_bytes(plan_file, json.dumps(plan(records), sort_keys=True).encode())
    results = interrupt.tune_fit(tuner)  # a signal stops here: no table from unfinished trials
    table = results_table(results, scenarios, records, time.monotonic() - started, runs)
    table = provenance.with_record(
        table,
        {
            "kind": "training",
            "code": provenance.code(),
            "settings": dataclasses.asdict(settings),
            "data": data_used,
        },
    )
    atomic.write_parquet(table, out / "training.parquet")
    return table


PLAN_FILE = "train-plan.json"  # what the Tune experiment trains: each scenario's record digest


def plan(records: dict[str, dict]) -> dict[str, str]:
    """Each scenario's whole record (every setting, epochs included; not the code version)
    as a digest: a Tune experiment is restored only for exactly the same plan."""
    return {name: provenance.identity(record) for name, record in records.items()}


def same_plan(plan_file: str, records: dict[str, dict]) -> bool:
    """Whether the experiment being resumed trains exactly these runs. Tune restores finished
    trials with their old results, so a scenario redefined since (another transform, key,
    data, setting or number of epochs) would come back as if it were the new one. When the
    plan differs, a new experiment starts instead: unchanged scenarios find their finished
    checkpoints (``trial.finished_checkpoint``) and are not trained again; changed ones are
    trained (or continue from their last checkpoint when only the epochs grew)."""
    try:
        before = json.loads(storage_io.read_bytes(plan_file))
    except (OSError, ValueError):
        before = {}
    now = plan(records)
    changed = sorted(name for name in now if before.get(name) != now[name])
    if changed:
        log.info(
            "scenario(s) %s changed since the experiment being resumed (or it has no "
            "plan): starting a new experiment; finished runs of unchanged scenarios are "
            "reused",
            ", ".join(changed),
        )
    return before == now


def by_expected_cost(scenarios: list[Scenario]) -> list[Scenario]:
    """Costliest first (adversarial, then encrypted): with trials running side by side, the
    long ones then never run alone at the end."""
    return sorted(scenarios, key=lambda s: (not s.adversarial, not s.encrypted))


def _trial_name(trial) -> str:
    return trial.config["scenario"]


def results_table(
    results,
    scenarios: list[Scenario],
    records: dict[str, dict],
    wall_seconds: float,
    runs: str = "",
) -> pa.Table:
    """One row per scenario. ``checkpoint`` is a location every node can open (a URI under
    ``runs`` when storage is remote); ``node`` is the node id of the trial's rank-0 worker;
    ``record`` the scenario's run record (JSON), ``run_id`` its digest."""
    wanted, by_name = {s.name for s in scenarios}, {}
    for result in results:
        if result.config["scenario"] not in wanted:
            continue
        if result.error is not None:
            raise LieRayError(
                f"training failed for scenario {result.config['scenario']}: "
                f"{type(result.error).__name__}; see the trial logs under "
                f"{result.path}"
            )
        by_name[result.config["scenario"]] = result.metrics
    missing = sorted(wanted - set(by_name))
    if missing:
        raise LieRayError(
            f"the experiment being resumed has no trial for {missing}: resume with "
            "the scenarios it was started with, or use a new --out"
        )
    stale = sorted(
        name
        for name, metrics in by_name.items()
        if metrics.get("run_id") != records[name]["run_id"]
    )
    if stale:  # never a table that pairs one definition with another's checkpoint
        raise LieRayError(
            f"the trials of {stale} were trained from another definition than "
            "the one asked for: run again without --resume, or use a new --out"
        )
    rows = []
    for scenario in scenarios:
        metrics, record = by_name[scenario.name], records[scenario.name]
        definition = record["scenario"]
        rows.append(
            {
                "scenario": scenario.name,
                "encrypted": scenario.encrypted,
                "key_policy": scenario.key_policy or "",
                "adversarial": scenario.adversarial,
                **transform_columns(definition),
                "key_batch_size": definition["key_batch_size"] or 0,
                "train_error": float(metrics["train_error"]),
                "test_error": float(metrics["test_error"]),
                "train_loss": float(metrics["train_loss"]),
                "epochs": int(metrics["epoch"]),
                "train_images": int(metrics["train_images"]),
                "test_images": int(metrics["test_images"]),
                "resumed_from_epoch": int(metrics["resumed_from_epoch"]),
                "key_fingerprint": metrics.get("key_fingerprint") or "",
                "checkpoint": to_location(runs, metrics.get("checkpoint_path", "")),
                "node": metrics.get("node", ""),
                # when the trial started and last reported (unix seconds): shows trials side by side
                "started_at": float(metrics.get("timestamp", "nan"))
                - float(metrics.get("time_total_s", 0)),
                "finished_at": float(metrics.get("timestamp", "nan")),
                "width": record["settings"]["width"],
                "workers": record["settings"]["num_workers"],
                "device": metrics.get("device", ""),
                "run_id": record["run_id"],
                "record": json.dumps(
                    {**record, "device": metrics.get("device", "")}, sort_keys=True
                ),
            }
        )
    table = pa.Table.from_pylist(rows)
    return table.replace_schema_metadata({"wall_seconds": f"{wall_seconds:.1f}"})


def transform_columns(definition: dict) -> dict:
    """``transform`` (``none`` for plain images), its block size and variant, as the run
    record defines them."""
    transform = definition["transform"]
    if transform is None:
        return {"transform": "none", "transform_block_size": 0, "transform_variant": ""}
    return {
        "transform": transform["name"],
        "transform_block_size": transform["block_size"],
        "transform_variant": transform["variant"],
    }
