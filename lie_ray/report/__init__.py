"""``report.md`` and its pictures, from the result tables alone.

The paper reads a low error under its own PGD (plain autograd through the true cipher) as
robustness. That gradient is zero through the cipher's quantisation and nibble split, so the
report puts the paper's protocol next to the adaptive attacks and makes the worst case the
headline. Everything is derived from the result tables alone, so the report can be rebuilt
at any time without Ray, and rebuilding it from the same tables gives the same bytes.

Reads from the results directory (through ``lie_ray.infra.tables``, one checked reader each):

    results.parquet    one row per (scenario, evaluation, epsilon), with a 95% Wilson interval
    examples.parquet   optional, one row per image: the sanity checks compare images
    training.parquet   optional, one row per scenario (train/test error, epochs)
    privacy.parquet    optional, the privacy attacks (also rendered alone as ``privacy.md``)
    cluster.parquet    optional, the cluster sampled over a sweep
    gallery.png        optional, linked as is

Writes beside them: ``curves.png``, ``cluster.png`` (with the cluster table), ``report.md`` and
a card per scenario, ``cards/<scenario>.json`` (``cards``).
The sections, one module each: ``paper`` (Table I, the adaptive table, the headline),
``deviations`` (where the run differs from the paper, from its run records), ``sanity``
(Carlini et al.'s checks),
``curves``, ``family``, ``privacy``, ``cluster``; ``markdown`` holds the table and cell format.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lie_ray.infra import atomic
from lie_ray.infra.provenance import record_of
from lie_ray.infra.tables import (
    RATE_COLUMNS,
    TRAINING_COLUMNS,
    check_columns,
    check_rates,
    read_training,
)
from lie_ray.report import fits, sanity
from lie_ray.report.cards import write_cards
from lie_ray.report.catalogue import Catalogue
from lie_ray.report.cluster import cluster_section
from lie_ray.report.curves import write_curves
from lie_ray.report.deviations import section as deviations_section
from lie_ray.report.family import family_section
from lie_ray.report.paper import (
    AMBIGUITY,
    PAPER_TABLE_I,
    THREAT_MODELS,
    headline_epsilon,
    load_results,
    render_report,
    scenario_order,
    training_metrics,
)
from lie_ray.report.privacy import section as privacy_section
from lie_ray.report.privacy import write_privacy
from lie_ray.report.provenance import section as provenance_section
from lie_ray.report.timing import timing_section

__all__ = ["AMBIGUITY", "PAPER_TABLE_I", "THREAT_MODELS", "write_privacy", "write_report"]


def write_report(results_dir: str | os.PathLike, training_table: pa.Table | None = None) -> Path:
    """Write ``curves.png`` and ``report.md`` into ``results_dir``; return the report's path.

    ``training_table`` stands in for ``training.parquet`` when the caller already holds it.
    """
    directory = Path(results_dir)
    rows = load_results(directory)
    if training_table is None:
        training_table = read_training(directory, TRAINING_COLUMNS, optional=True)
    else:
        check_columns(training_table, TRAINING_COLUMNS, "the training table")
        check_rates(training_table, RATE_COLUMNS, "the training table")
    training = training_metrics(training_table)
    scenarios = scenario_order(rows, training)
    catalogue = Catalogue.of_results(directory)  # how the evaluations are shown, as recorded
    epsilon = headline_epsilon(rows, catalogue)
    images = sanity.PerImage.of_results(directory)  # the per-image rows the checks pair
    fitted = fits.recorded(directory)  # what the keyless attacker's fits reached
    write_curves(rows, scenarios, directory / "curves.png", catalogue)
    doubts = sanity.doubts(rows, scenarios, epsilon, catalogue, images)
    record = record_of(pq.read_schema(directory / "results.parquet")) or {}
    write_cards(directory, rows, record, scenarios, epsilon, doubts, fitted)
    text = render_report(
        rows,
        training,
        scenarios,
        epsilon,
        gallery=(directory / "gallery.png").is_file(),
        doubts=doubts,
        catalogue=catalogue,
        notes=fits.headline_notes(fitted),
    )
    text += fits.section(fitted)
    text += sanity.section(rows, scenarios, epsilon, catalogue, images)
    text += deviations_section(directory, training_table)  # from the results' run records
    text += family_section(rows, training_table, catalogue)  # "" unless several transforms
    text += privacy_section(directory)  # empty unless privacy.parquet is there
    text += cluster_section(directory)  # cluster.png, when the sweep recorded the cluster
    text += timing_section(directory)  # predicted beside measured, when a sweep ran
    text += provenance_section(directory)  # the code, data and keys the tables came from
    target = directory / "report.md"
    with atomic.staged_file(target) as staging:
        staging.write_text(text, encoding="utf-8")
    return target
