"""The run record decides what a resumed or repeated job may reuse: a scenario redefined in a
--scenario-file between two runs into one --out is trained and evaluated anew, the unchanged
one is reused, and every table names the run it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from conftest import LIGHT_EVAL
from typer.testing import CliRunner

from lie_ray.app.cli import app
from lie_ray.evaluation.run import DIGEST_KEY
from lie_ray.infra.provenance import record_of

SLICE = [
    "--preset",
    "smoke",
    "--epochs",
    "1",
    "--train-limit",
    "128",
    "--test-limit",
    "64",
    "--width",
    "4",
]
LIGHT = ["--preset", "smoke", *LIGHT_EVAL]


def invoke(*args) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output[-4000:]
    return result.output


def scenario_file(path: Path, transform: str) -> Path:
    path.write_text(
        f'[[scenario]]\nname = "Mine"\nencrypted = true\nkey_policy = "fixed"\n'
        f'transform = "{transform}"\n'
    )
    return path


def trained(out: Path) -> dict[str, dict]:
    return {r["scenario"]: r for r in pq.read_table(out / "training.parquet").to_pylist()}


def test_a_redefined_scenario_is_retrained_and_reevaluated_the_rest_reused(
    ray_cluster, cifar_dir, tmp_path
):
    key, out, evaluated = tmp_path / "key.json", tmp_path / "train", tmp_path / "eval"
    invoke("keygen", "--out", key)
    mine = scenario_file(tmp_path / "mine.toml", "le")
    train = [
        "train",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--out",
        out,
        "--scenario-file",
        mine,
        "--scenarios",
        "Plain,Mine",
        *SLICE,
    ]
    evaluate = [
        "evaluate",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--runs",
        out,
        "--out",
        evaluated,
        *LIGHT,
    ]
    invoke(*train)
    invoke(*evaluate)
    before, parts = trained(out), evaluated / "evaluations"
    digests = {
        n: pq.read_schema(parts / f"{n}.parquet").metadata[DIGEST_KEY] for n in ("Plain", "Mine")
    }

    scenario_file(mine, "shuffle")  # the same name, another transform
    invoke(*train, "--resume")
    after = trained(out)
    assert after["Mine"]["transform"] == "shuffle" and before["Mine"]["transform"] == "le"
    assert after["Mine"]["run_id"] != before["Mine"]["run_id"]
    assert after["Mine"]["checkpoint"] != before["Mine"]["checkpoint"]  # a run of its own
    assert after["Mine"]["resumed_from_epoch"] == 0  # trained from scratch, not the le weights
    meta = json.loads((Path(after["Mine"]["checkpoint"]) / "meta.json").read_text())
    assert meta["record"]["scenario"]["transform"]["name"] == "shuffle"
    assert after["Plain"]["checkpoint"] == before["Plain"]["checkpoint"]  # reused as it was
    assert after["Plain"]["run_id"] == before["Plain"]["run_id"]

    invoke(*evaluate, "--resume")
    now = {
        n: pq.read_schema(parts / f"{n}.parquet").metadata[DIGEST_KEY] for n in ("Plain", "Mine")
    }
    assert now["Plain"] == digests["Plain"] and now["Mine"] != digests["Mine"]
    results = pq.read_table(evaluated / "results.parquet")
    rows = [r for r in results.to_pylist() if r["scenario"] == "Mine"]
    assert {r["transform"] for r in rows} == {"shuffle"}
    assert {r["run_id"] for r in rows} == {after["Mine"]["run_id"]}
    assert (
        record_of(results.schema)["training"]["Mine"]["scenario"]["transform"]["name"] == "shuffle"
    )
