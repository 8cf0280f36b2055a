"""The tables of a run directory: their file names, the columns each reader needs, one reader each.

Every job leaves a Parquet table in its ``--out`` directory; the report, the evaluation (which
reads what training wrote) and the commands read them back:

    training.parquet   one row per trained scenario (lie_ray.training)
    results.parquet    one row per (scenario, evaluation, epsilon), with a 95% Wilson interval
    examples.parquet   one row per image per (scenario, evaluation, epsilon) (lie_ray.evaluation)
    privacy.parquet    one row per transform x privacy attack (lie_ray.privacy)
    cluster.parquet    the cluster sampled over a sweep (lie_ray.infra.cluster_log)

Each reader checks the columns its caller needs, so a missing, unreadable or foreign table is
the same one-line ``LieRayError`` wherever it is read, and says which step to rerun. The readers
live in ``infra``, below the jobs, because a job reads another's table (evaluation reads
training.parquet) and no job may import the report layer. A location is a table's file or
the directory holding it, a local path or a storage URI.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from lie_ray.errors import LieRayError
from lie_ray.infra import storage

TRAINING = "training.parquet"
RESULTS = "results.parquet"
EXAMPLES = "examples.parquet"
PRIVACY = "privacy.parquet"
CLUSTER = "cluster.parquet"

# What evaluation needs of a trained scenario: which checkpoint, and its run record (the
# definition it was trained with: transform, key policy and key-batch size, key fingerprint).
TRAINED_COLUMNS = ("scenario", "encrypted", "key_policy", "checkpoint", "run_id", "record")
# Table I's fallback: clean errors from the training run's last epoch.
TRAINING_COLUMNS = ("scenario", "train_error", "test_error", "epochs")
# What the family table shows of each scenario (optional: older runs trained LE only).
FAMILY_COLUMNS = ("scenario", "encrypted", "transform", "transform_block_size", "transform_variant")
RESULT_COLUMNS = ("scenario", "evaluation", "epsilon", "n", "error", "ci_low", "ci_high")
EXAMPLE_COLUMNS = ("scenario", "evaluation", "epsilon", "id", "correct", "linf", "attacked")
PRIVACY_COLUMNS = (
    "transform",
    "attack",
    "threat_model",
    "k",
    "ssim",
    "ssim_low",
    "ssim_high",
    "psnr",
    "key_recovered",
    "key_space_log2",
    "keys_per_second",
    "brute_force_log10_years",
)
CLUSTER_COLUMNS = (
    "time",
    "phase",
    "alive_nodes",
    "cpus_total",
    "cpus_used",
    "gpus_total",
    "gpus_used",
)

Location = str | os.PathLike


# --- one reader per table ------------------------------------------------------------------


def read_training(
    location: Location, columns: tuple[str, ...] = TRAINED_COLUMNS, *, optional: bool = False
) -> pa.Table | None:
    """``training.parquet`` as ``lie-ray train`` wrote it; ``optional``: None when absent."""
    path = table_path(location, TRAINING)
    if not exists(path):
        if optional:
            return None
        raise LieRayError(f"no {path}: pass as --runs the --out directory of 'lie-ray train'")
    return read_table(path, columns)


def read_results(location: Location) -> pa.Table:
    """``results.parquet``: required, and with at least one row (the report is built on it)."""
    path = table_path(location, RESULTS)
    if not exists(path):
        raise LieRayError(f"no evaluation results at {path}: run 'lie-ray evaluate' first")
    table = read_table(path, RESULT_COLUMNS)
    if table.num_rows == 0:
        raise LieRayError(f"{path} has no rows: rerun 'lie-ray evaluate'")
    return table


def read_examples(location: Location) -> pa.Table:
    """``examples.parquet`` (or one scenario's part of it, which has the same columns)."""
    path = table_path(location, EXAMPLES)
    if not exists(path):
        raise LieRayError(f"no evaluation examples at {path}: run 'lie-ray evaluate' first")
    return read_table(path, EXAMPLE_COLUMNS)


def read_privacy(location: Location) -> pa.Table | None:
    """``privacy.parquet``; None when the privacy attacks did not run (the section is empty)."""
    path = table_path(location, PRIVACY)
    return read_table(path, PRIVACY_COLUMNS) if exists(path) else None


def read_cluster(location: Location) -> pa.Table | None:
    """``cluster.parquet``; None when the sweep did not record the cluster."""
    path = table_path(location, CLUSTER)
    return read_table(path, CLUSTER_COLUMNS) if exists(path) else None


# --- checks --------------------------------------------------------------------------------


def read_table(location: Location, columns: tuple[str, ...]) -> pa.Table:
    """Any of the tables, checked for ``columns``; unreadable is a one-line error."""
    try:  # a local path straight to pyarrow, so its errors read as they always have
        table = (
            storage.read_table(location) if storage.is_uri(location) else pq.read_table(location)
        )
    except (OSError, pa.ArrowInvalid) as err:
        raise LieRayError(f"cannot read {location} ({err}): rerun the step that wrote it") from None
    check_columns(table, columns, str(location))
    check_rates(table, tuple(c for c in columns if c in RATE_COLUMNS), str(location))
    return table


# Columns that hold a rate, wherever they appear: a value outside [0, 1] is a broken table.
RATE_COLUMNS = ("error", "ci_low", "ci_high", "train_error", "test_error", "clean_train_error")


def check_rates(table: pa.Table, columns: tuple[str, ...], where: str) -> None:
    """Every value of ``columns`` (those present) a rate in [0, 1]; NaN and nulls fail too, so
    no report or table renders an error of 1.6 or 'nan' as if it were a measurement."""
    for name in columns:
        if name not in table.column_names:
            continue
        values = table[name].cast(pa.float64())
        valid = pc.and_(pc.greater_equal(values, 0.0), pc.less_equal(values, 1.0))
        bad = pc.invert(pc.fill_null(valid, False))
        if pc.any(bad).as_py():
            first = values.filter(bad)[0].as_py()
            raise LieRayError(
                f"{where}: column {name} holds {first!r}, not an error rate in "
                "[0, 1]: the table is damaged or was not written by lie_ray; "
                "rerun the step that wrote it"
            )


def check_columns(table: pa.Table, columns: tuple[str, ...], where: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise LieRayError(
            f"{where} lacks columns {missing}: it was written by another version; "
            "rerun the step that wrote it"
        )


def table_path(location: Location, name: str) -> Path | str:
    """``location`` itself when it names a Parquet file, else the table ``name`` inside it."""
    if str(location).partition("?")[0].endswith(".parquet"):
        return location if storage.is_uri(location) else Path(location)
    joined = storage.join(location, name)
    return joined if storage.is_uri(joined) else Path(joined)


def exists(path: Path | str) -> bool:
    return storage.exists(path) if storage.is_uri(path) else Path(path).is_file()
