"""Scenarios that name a transform: records, models, the Ray Data path, tables and report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_report import result_row, table_rows
from test_training import sorted_by_id

from lie_ray import transforms
from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import to_ray_dataset
from lie_ray.encryption.run import encrypt_dataset
from lie_ray.errors import LieRayError
from lie_ray.evaluation.run import with_training_columns
from lie_ray.keys import generate_key, load_key, save_key
from lie_ray.keys.policies import PolicySpec
from lie_ray.report import write_report
from lie_ray.scenarios import FAMILY_SCENARIOS, PAPER_SCENARIOS, Scenario, load_scenario_file
from lie_ray.training.record import scenario_definition, training_record
from lie_ray.training.run import transform_columns
from lie_ray.training.settings import get_preset, training_plan
from lie_ray.training.untrained import NO_DATA
from lie_ray.training.worker import model_config


def test_scenarios_name_a_transform_and_presets_pick_them(tmp_path):
    settings, family = training_plan("family", None, None, {})
    assert [s.transform for s in family if s.encrypted] == transforms.names()
    assert [s.name for s in training_plan("smoke", None, None, {})[1]] == list(PAPER_SCENARIOS)
    assert all(s.transform == "le" for s in PAPER_SCENARIOS.values())
    toml = tmp_path / "s.toml"
    toml.write_text(
        '[[scenario]]\nname = "FFX-2"\nencrypted = true\nkey_policy = "fixed"\n'
        'transform = "ffx"\nblock_size = 2\nvariant = "reference"\n'
    )
    (ffx,) = load_scenario_file(toml).values()
    assert transform_columns(scenario_definition(ffx, settings)) == {
        "transform": "ffx",
        "transform_block_size": 2,
        "transform_variant": "reference",
    }
    with pytest.raises(LieRayError, match="scenario 'X': unknown transform 'rot13'"):
        Scenario("X", encrypted=True, key_policy="fixed", transform="rot13")
    with pytest.raises(LieRayError, match="no variant 'reference'"):
        Scenario("X", encrypted=True, key_policy="fixed", transform="np", variant="reference")


def test_models_adapt_to_the_transform():
    settings = get_preset("family")
    configs = {s.name: model_config(s, settings) for s in FAMILY_SCENARIOS.values()}
    assert {n for n, c in configs.items() if c["adaptation"] and c["encrypted"]} == {
        "LE",
        "ELE",
        "EtC",
    }
    assert configs["Shuffle"]["block_size"] == 4 and configs["PE"]["block_size"] == 1


@pytest.mark.parametrize("name,policy", [("ffx", "id-group"), ("pe", "per-image")])
def test_ray_data_and_worker_paths_agree_for_other_transforms(
    ray_cluster, cifar_dir, tmp_path, name, policy
):
    key_path = save_key(generate_key(), tmp_path / "key.json")
    split = load_split(cifar_dir, "train").head(96)
    spec, transform = PolicySpec(policy, key_batch_size=32), transforms.TransformSpec(name)
    rows = sorted_by_id(
        encrypt_dataset(
            to_ray_dataset(split, 48), key_path, spec, "train", actors=1, transform=transform
        ).take_batch(1000, batch_format="numpy")
    )
    plain = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255
    keyed = transform.keyed(load_key(key_path))
    on_worker = spec.build().encrypt_torch(keyed, plain, split.ids, "train")
    expected = torch.from_numpy(np.ascontiguousarray(rows["image"])).permute(0, 3, 1, 2).float()
    expected = expected if name == "ffx" else expected / 255
    assert (on_worker - expected).abs().max() < 1e-6
    assert len(set(rows["key_fingerprint"])) == (3 if policy == "id-group" else 96)


def test_results_and_report_carry_the_family(tmp_path: Path):
    trained = [
        {
            "scenario": "Plain",
            "encrypted": False,
            "transform": "none",
            "transform_block_size": 0,
            "transform_variant": "",
        },
        {
            "scenario": "Shuffle",
            "encrypted": True,
            "transform": "shuffle",
            "transform_block_size": 4,
            "transform_variant": "paper",
        },
        {
            "scenario": "FFX",
            "encrypted": True,
            "transform": "ffx",
            "transform_block_size": 2,
            "transform_variant": "reference",
        },
    ]
    for r in trained:  # each row's run record, as training writes it
        scenario = Scenario(
            r["scenario"],
            r["encrypted"],
            "fixed" if r["encrypted"] else None,
            transform=r["transform"] if r["encrypted"] else "le",
            block_size=r["transform_block_size"] or None,
            variant=r["transform_variant"] or None,
        )
        r["record"] = json.dumps(training_record(scenario, get_preset("smoke"), "f" * 16, NO_DATA))
    rows = []
    for i, r in enumerate(trained):
        rows += [result_row(r["scenario"], "test", 0.0, 0.2 + i / 10)]
        rows += [
            result_row(r["scenario"], e, eps, 0.3 + i / 10 + eps + extra)
            for e, extra in (
                ("pgd", 0),
                ("worst-case-keyless", 0.05),
                ("worst-case-leaked", 0.07),
                ("worst-case", 0.1),
            )
            for eps in (0.0, 0.1)
        ]
    results = with_training_columns(pa.Table.from_pylist(rows), trained)
    assert dict(zip(results["scenario"].to_pylist(), results["transform"].to_pylist())) == {
        "Plain": "none",
        "Shuffle": "shuffle",
        "FFX": "ffx",
    }
    pq.write_table(results, tmp_path / "results.parquet")
    pq.write_table(
        pa.Table.from_pylist(
            [{**r, "train_error": 0.1, "test_error": 0.2, "epochs": 1} for r in trained]
        ),
        tmp_path / "training.parquet",
    )
    table = table_rows(write_report(tmp_path).read_text(), "## The transform family")
    assert table["scenario"][:5] == ["transform", "variant", "M", "key space (log2)", "clean test"]
    assert table["Shuffle"][:5] == [
        "shuffle",
        "paper",
        "4",
        f"{math.lgamma(49) / math.log(2):.1f}",
        "0.300",
    ]
    # FFX: 792 binary keys and the 128-bit password lie_ray derives from the master key.
    assert table["FFX"][3:] == [
        f"{math.log2(792) + 128:.1f}",
        "0.400",
        "0.600",
        "0.650",
        "0.670",
        "0.700",
    ]
    assert table["Plain"][3] == "-"


@pytest.mark.parametrize(
    "column,value", [("error", 1.6), ("ci_high", -0.1), ("error", float("nan"))]
)
def test_a_results_table_with_an_error_rate_outside_0_1_is_refused(tmp_path: Path, column, value):
    rows = [result_row("Plain", "test", 0.0, 0.2), result_row("Plain", "pgd", 0.1, 0.9)]
    rows[1][column] = value
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "results.parquet")
    with pytest.raises(
        LieRayError,
        match=rf"column {column} holds .*not an error rate in "
        r"\[0, 1\]",
    ):
        write_report(tmp_path)
    assert not (tmp_path / "report.md").exists()
