"""One actor pool for a whole evaluation: the same tables as each scenario alone, each actor
loading each scenario once, a part per scenario, and --resume running only what is missing."""

from __future__ import annotations

import logging
import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray.cloudpickle
import torch
from ray.data.block import BlockAccessor

from lie_ray.data.cifar import defender_part, held_out, load_split
from lie_ray.evaluation import pipeline, saved
from lie_ray.evaluation.actor import EvaluateShard
from lie_ray.evaluation.run import (
    DIGEST_KEY,
    attacker_images,
    held_out_part,
    run_evaluation,
    trained_record,
)
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.keys import generate_key, save_key
from lie_ray.scenarios import PAPER_SCENARIOS
from lie_ray.training.untrained import write_runs

# 24 test images in chunks of 10 (the last one short), light attacks, two actors.
SETTINGS = EvalSettings(
    epsilons=(0.0, 0.1),
    pgd_steps=2,
    eot_keys=1,
    square_queries=4,
    autoattack="light",
    autoattack_steps=2,
    test_limit=24,
    actors=2,
    batch_size=10,
    attacker_images=16,
    pba_steps=4,
    key_search_budget=4,
    rand_steps=2,
    rand_draws=2,
)
ORDER = [
    ("scenario", "ascending"),
    ("evaluation", "ascending"),
    ("epsilon", "ascending"),
    ("id", "ascending"),
]


class CountingShard(EvaluateShard):
    """Records every checkpoint an actor reads as '<pid> <scenario>' lines in ``record``."""

    record = ""

    def engine(self, scenario):
        if scenario not in self.engines:
            with open(self.record, "a") as lines:
                lines.write(f"{os.getpid()} {scenario}\n")
        return super().engine(scenario)


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # actors cannot import tests/


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """What 'lie-ray train' leaves for Plain and Encrypted (untrained width-4 networks)."""
    tmp = tmp_path_factory.mktemp("runs")
    torch.manual_seed(0)
    key = generate_key()
    rows = write_runs(tmp, [PAPER_SCENARIOS["Plain"], PAPER_SCENARIOS["Encrypted"]], key)
    return {"dir": tmp, "key": str(save_key(key, tmp / "key.json")), "rows": rows}


@pytest.fixture(scope="module")
def evaluated(ray_cluster, runs, cifar_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluated")
    record = out / "loads.txt"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "EvaluateShard", CountingShard)
        patch.setattr(CountingShard, "record", str(record))
        run_evaluation(runs["dir"], cifar_dir, out, runs["key"], SETTINGS)
    return {"out": out, "loads": record.read_text().split("\n")[:-1]}


def each_scenario_alone(runs, cifar_dir) -> pa.Table:
    """The old way: each scenario on its own, batch by batch (chunks of ``batch_size`` from
    id 0), here in one process; one actor, fed chunks two at a time, mixing scenarios."""
    test = load_split(cifar_dir, "test").head(SETTINGS.test_limit)
    # the defender's part of the train split and the attacker's held-out part, as recorded
    holdout, limit = held_out_part([trained_record(r) for r in runs["rows"]])
    everything = load_split(cifar_dir, "train")
    train = defender_part(everything, holdout, limit)
    plain = runs["rows"][0]["checkpoint"]
    shard = EvaluateShard(  # prepares its own fits, where the pool is handed the tasks'
        {r["scenario"]: r for r in runs["rows"]},
        runs["key"],
        SETTINGS,
        plain,
        attacker_images(held_out(everything, holdout)[1], SETTINGS.attacker_images),
    )
    blocks = [
        b
        for r in runs["rows"]
        for s in (test, train)
        for b in pipeline.chunks(r["scenario"], s, SETTINGS.batch_size)
    ]
    tables = []
    for start in range(0, len(blocks), 2):
        chunks = BlockAccessor.for_block(pa.concat_tables(blocks[start : start + 2]))
        tables.append(pa.table(shard(chunks.to_batch_format("numpy"))))
    assert dict(shard.loads) == {"Plain": 1, "Encrypted": 1}  # warm across calls
    return pa.concat_tables(tables).sort_by(ORDER)


def test_one_pool_gives_each_scenarios_own_results(evaluated, runs, cifar_dir):
    examples = pq.read_table(evaluated["out"] / "examples.parquet")
    alone = each_scenario_alone(runs, cifar_dir)
    expected = saved.without_images(alone)  # they go to OUT/adversarial, compared below
    assert examples.num_rows == expected.num_rows
    for name in expected.column_names:
        got, want = examples[name].to_numpy(), expected[name].to_numpy()
        assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f"), name
    counts = examples.group_by(["scenario", "evaluation"]).aggregate([("id", "count")])
    sizes = {(r["scenario"], r["evaluation"]): r["id_count"] for r in counts.to_pylist()}
    # the train split less the attacker's 512 held-out images
    assert sizes[("Plain", "train")] == sizes[("Encrypted", "train")] == 5438 - 512
    assert sizes[("Encrypted", "bpda")] == 2 * 24 and sizes[("Plain", "pgd")] == 2 * 24
    assert ("Plain", "bpda") not in sizes
    order = [(name, "ascending") for name in ("evaluation", "epsilon", "id")]
    for scenario in ("Plain", "Encrypted"):
        kept = pq.read_table(evaluated["out"] / saved.DIRECTORY / f"{scenario}.parquet")
        mine = alone.filter(pa.compute.equal(alone["scenario"], scenario))
        assert kept.sort_by(order).equals(saved.decided_rows(mine).sort_by(order))


def test_each_actor_loads_each_scenario_once(evaluated):
    loads = evaluated["loads"]
    assert len(loads) == len(set(loads)), loads  # no actor read a checkpoint twice
    assert len({line.split()[0] for line in loads}) == SETTINGS.actors  # both actors worked
    assert {line.split()[1] for line in loads} == {"Plain", "Encrypted"}


def test_a_part_per_scenario_and_resume_runs_only_what_is_missing(
    evaluated, runs, cifar_dir, caplog
):
    out = evaluated["out"]
    examples = pq.read_table(out / "examples.parquet")
    for scenario in ("Plain", "Encrypted"):
        part = pq.read_table(out / "evaluations" / f"{scenario}.parquet")
        assert DIGEST_KEY in part.schema.metadata
        assert set(part["scenario"].to_pylist()) == {scenario}
        assert (
            part.num_rows
            == examples.filter(pa.compute.equal(examples["scenario"], scenario)).num_rows
        )
    (out / "evaluations" / "Encrypted.parquet").unlink()
    (out / "examples.parquet").unlink()
    # Plain's part as an older lie_ray kept it, before the 'reused' column existed.
    plain_part = out / "evaluations" / "Plain.parquet"
    older = pq.read_table(plain_part)
    pq.write_table(
        older.drop_columns(["reused"]).replace_schema_metadata(older.schema.metadata), plain_part
    )
    with caplog.at_level(logging.INFO, logger="lie_ray"):
        run_evaluation(runs["dir"], cifar_dir, out, runs["key"], SETTINGS, resume=True)
    said = caplog.text
    assert "Plain: already evaluated" in said and "evaluating Plain" not in said
    assert "evaluating Encrypted" in said and "evaluated Encrypted (2 of 2)" in said
    # (pandas: broken_at is NaN where nothing broke the image, and NaN never equals NaN)
    again = pq.read_table(out / "examples.parquet").to_pandas()
    before = examples.to_pandas()
    assert again.drop(columns="reused").equals(before.drop(columns="reused"))
    plain = again.scenario == "Plain"
    assert again.reused[plain].isna().all()  # unknown for the older part, not made up
    assert (again.reused[~plain] == before.reused[~plain]).all()
    assert (out / "evaluations" / "Encrypted.parquet").is_file()
