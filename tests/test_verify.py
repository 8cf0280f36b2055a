"""Results others can check. An evaluation of models that learned (the ``learned`` fixture's
Plain and Encrypted: attacks break their images, where the slice's near-chance models leave
nothing to keep), laid out as a sweep lays out its folder; then ``lie-ray verify`` on it as an
outside checker runs it (a subprocess, on a copy), refused or told what a checker must be: a
changed image file, a checkpoint other than the evaluated one, a wrong key, a figure the
images do not bear out, and images rewritten along with their digest. Then each scenario's
card, and verify on the smoke sweep's own folder."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import torch
from conftest import lie_ray

from lie_ray.attacks.spec import WORST_CASE_NAMES
from lie_ray.evaluation import saved
from lie_ray.evaluation.run import run_evaluation
from lie_ray.evaluation.settings import get_eval_preset
from lie_ray.infra import provenance
from lie_ray.infra.checkpoints import STATE_FILE
from lie_ray.keys import Key, save_key
from lie_ray.report import write_report
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import TrainSettings
from lie_ray.training.untrained import write_runs


def verify(*args) -> subprocess.CompletedProcess:
    return lie_ray("verify", *args)


@pytest.fixture(scope="module")
def evaluated(learned, cifar_dir, ray_cluster, tmp_path_factory):
    """OUT with the runs and the key inside it, as a sweep leaves them: the learned models'
    weights in real checkpoints, every default attack of the smoke preset at eps 0 and 0.1 on
    32 test images, the report and cards."""
    out = tmp_path_factory.mktemp("checked") / "out"
    defenders, _ = learned
    key = Key("master", bytes(range(32)), block_size=4)  # the learned Encrypted model's
    key_path = save_key(key, out / "keys" / "master.json")
    scenarios = [Scenario("Plain", False), Scenario("Encrypted", True, "fixed")]
    trained = TrainSettings(width=8, adaptation_channels=16, epochs=3)
    for row in write_runs(out / "runs", scenarios, key, trained):
        weights = defenders[row["scenario"]].model.state_dict()
        torch.save({"model": weights}, f"{row['checkpoint']}/{STATE_FILE}")
    settings = dataclasses.replace(
        get_eval_preset("smoke"),
        epsilons=(0.0, 0.1),
        test_limit=32,
        pgd_steps=3,
        eot_keys=2,
        square_queries=10,
        pba_steps=8,
        key_search_budget=8,
        attacker_images=32,
        batch_size=32,
        actors=1,
    )
    run_evaluation(out / "runs", cifar_dir, out, key_path, settings)
    write_report(out, pq.read_table(out / "runs" / "training.parquet"))
    return out


@pytest.fixture()
def copied(evaluated, tmp_path):
    """A copy of the evaluated folder for one test to spoil."""
    copy = tmp_path / "out"
    shutil.copytree(evaluated, copy)
    return copy


def rewrite_results(out, change) -> None:
    """results.parquet with ``change(table, record)`` applied, its record kept."""
    table = pq.read_table(out / "results.parquet")
    record = provenance.record_of(table.schema)
    table = change(table, record)
    pq.write_table(provenance.with_record(table, record), out / "results.parquet")


def test_verify_agrees_and_the_kept_images_are_the_ones_that_broke(evaluated):
    out = evaluated
    results = pq.read_table(out / "results.parquet")
    record = provenance.record_of(results.schema)
    examples = pq.read_table(out / "examples.parquet")
    assert not set(saved.IMAGE_COLUMNS) & set(examples.column_names)
    worst = examples.filter(pc.is_in(examples["evaluation"], pa.array(WORST_CASE_NAMES)))
    assert set(record["adversarial"]) == {"Plain", "Encrypted"}
    for scenario, entry in record["adversarial"].items():
        kept = pq.read_table(out / entry["file"])
        assert saved.sha256(out / entry["file"]) == entry["sha256"]
        # One image per worst-case row an attack broke (examples.parquet says which), each
        # the row's own: same id, epsilon, attack and prediction.
        mine = worst.filter(pc.equal(worst["scenario"], scenario)).to_pandas()
        broken = mine[~mine.broken_by.isin(["", "clean"])]
        assert kept.num_rows == entry["images"] == len(broken) > 0
        both = kept.to_pandas().merge(broken, on=["evaluation", "epsilon", "id"])
        assert len(both) == len(broken)
        assert (both.broken_by_x == both.broken_by_y).all()
        assert (both.adv_pred_x == both.adv_pred_y).all()
        assert all(len(image) == 32 * 32 * 3 for image in both.image)
    assert not record["checkpoints"]["Encrypted"].startswith("/")  # inside OUT: relative

    result = verify(out)  # the key: OUT/keys/master.json, as in a sweep's folder
    assert result.returncode == 0, result.stdout + result.stderr
    figures = results.filter(pc.is_in(results["evaluation"], pa.array(WORST_CASE_NAMES)))
    assert result.stdout == (
        f"verified {figures.num_rows} worst-case figures of 2 scenarios in {out}: "
        "every one agrees with results.parquet\n"
    )


def test_verify_refuses_a_changed_image_another_checkpoint_and_a_wrong_key(copied, tmp_path):
    record = provenance.record_of(pq.read_schema(copied / "results.parquet"))
    images = copied / record["adversarial"]["Encrypted"]["file"]
    original = images.read_bytes()
    table = pq.read_table(images)
    first = bytearray(table["image"][0].as_py())
    first[0] ^= 1
    changed = table.set_column(
        table.column_names.index("image"),
        "image",
        pa.array([bytes(first), *table["image"].to_pylist()[1:]], pa.binary()),
    )
    pq.write_table(changed, images)
    result = verify(copied)
    assert result.returncode == 2 and result.stderr.count("\n") == 1  # one line
    assert "is not the file the evaluation wrote" in result.stderr
    images.write_bytes(original)

    evaluated = copied / record["checkpoints"]["Encrypted"]
    kept = evaluated.rename(tmp_path / "evaluated")
    shutil.copytree(copied / record["checkpoints"]["Plain"], evaluated)
    result = verify(copied)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "holds run" in result.stderr and "restore the evaluated checkpoint" in result.stderr
    shutil.rmtree(evaluated)
    kept.rename(evaluated)

    other = tmp_path / "other.json"
    save_key(Key("master", bytes(range(1, 33)), block_size=4), other)
    result = verify(copied, "--key", other)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "pass the key used for training" in result.stderr
    assert verify(copied).returncode == 0  # all restored: it agrees again


def test_verify_names_each_figure_its_images_do_not_bear_out(copied):
    """A recorded error the images do not give, then images swapped for black ones with the
    digest rewritten to match (an evaluation that kept the wrong images): one line per
    disagreeing figure, naming it, and exit status 1."""

    def one_error_fewer(table, record):
        rows = table.to_pylist()
        chosen = next(
            r
            for r in rows
            if r["scenario"] == "Plain" and r["evaluation"] == "worst-case" and r["epsilon"] > 0
        )
        chosen["error"] = (round(chosen["error"] * chosen["n"]) - 1) / chosen["n"]
        return pa.Table.from_pylist(rows, schema=table.schema)

    rewrite_results(copied, one_error_fewer)
    result = verify(copied)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Plain worst-case at eps 0.1000:"), lines

    record = provenance.record_of(pq.read_schema(copied / "results.parquet"))
    images = copied / record["adversarial"]["Encrypted"]["file"]
    table = pq.read_table(images)
    black = np.zeros(32 * 32 * 3, np.uint8).tobytes()
    table = table.set_column(
        table.column_names.index("image"), "image", pa.array([black] * table.num_rows)
    )
    pq.write_table(table, images)

    def new_digest(table, record):
        record["adversarial"]["Encrypted"]["sha256"] = saved.sha256(images)
        return table

    rewrite_results(copied, new_digest)
    result = verify(copied)
    assert result.returncode == 1
    lines = result.stdout.strip().splitlines()
    assert any(line.startswith("Encrypted worst-case") for line in lines)
    assert all("images lie outside eps" in line for line in lines if "Encrypted" in line)


def test_each_scenario_has_a_card_whose_figures_the_examples_bear_out(evaluated):
    """``cards/<scenario>.json``: RobustBench's fields and lie_ray's tiers. Robust accuracy is
    the results' worst case; the attack success rate over correctly classified images is
    counted here image by image from examples.parquet (the card derives it from the error
    rates); the key-based scenario's headline (``external``) is the keyless attacker's."""
    out = evaluated
    results = pq.read_table(out / "results.parquet").to_pylist()
    examples = pq.read_table(out / "examples.parquet").to_pandas()
    record = provenance.record_of(pq.read_schema(out / "results.parquet"))
    for scenario in ("Plain", "Encrypted"):
        card = json.loads((out / "cards" / f"{scenario}.json").read_text())
        assert card["name"] == scenario and card["dataset"] == "cifar10"
        assert card["lie_ray"]["run_id"] == record["training"][scenario]["run_id"]
        mine = examples[examples.scenario == scenario]
        clean = mine[mine.evaluation == "test"].set_index("id").correct
        correct = clean[clean].index
        rates = []
        for worst_case, by_eps in card["lie_ray"]["tiers"].items():
            for eps, figures in by_eps.items():
                row = next(
                    r
                    for r in results
                    if (r["scenario"], r["evaluation"]) == (scenario, worst_case)
                    and abs(r["epsilon"] - float(eps)) < 1e-6
                )
                assert figures["robust_acc"] == pytest.approx(1 - row["error"], abs=1e-6)
                rows = mine[
                    (mine.evaluation == worst_case) & ((mine.epsilon - float(eps)).abs() < 1e-6)
                ].set_index("id")
                broken = int((~rows.correct[correct]).sum())
                rate = broken / len(correct)
                assert figures["attack_success_rate"] == pytest.approx(rate, abs=1e-6)
                rates.append(figures["attack_success_rate"])
        assert max(rates) > 0  # attacks broke images the model had right
    encrypted = json.loads((out / "cards" / "Encrypted.json").read_text())
    keyless = encrypted["lie_ray"]["tiers"]["worst-case-keyless"][f"{0.1:.6f}"]
    assert encrypted["external"] == f"{100 * keyless['robust_acc']:.2f}"
    assert encrypted["lie_ray"]["published"]["robust_acc"] == pytest.approx(1 - 0.269)
    assert (
        encrypted["lie_ray"]["key_fingerprint"]
        == Key("master", bytes(range(32)), block_size=4).fingerprint
    )


def test_verify_agrees_with_the_smoke_sweep(smoke_sweep):
    """The sweep's own folder (its runs, key and images inside it), as submitted by Ray Job."""
    out = smoke_sweep["out"]
    results = pq.read_table(out / "results.parquet")
    figures = results.filter(pc.is_in(results["evaluation"], pa.array(WORST_CASE_NAMES)))
    result = verify(out)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"verified {figures.num_rows} worst-case figures of 5 scenarios" in result.stdout


def test_the_fixed_key_adversarial_sets_in_robustbenchs_layout(evaluated, learned, tmp_path):
    """``--robustbench DIR``: per scenario, plain-image worst case and epsilon, a tensor of the
    test set's size that the defended model, classifying it here, gets exactly as wrong as
    results.parquet says; the channel's ciphertexts are no plain images and stay out."""
    defenders, _ = learned
    result = verify(evaluated, "--robustbench", tmp_path / "rb")
    assert result.returncode == 0, result.stderr
    results = pq.read_table(evaluated / "results.parquet").to_pylist()
    test_ids = np.arange(32)
    written = sorted(p.relative_to(tmp_path / "rb") for p in (tmp_path / "rb").rglob("*.pt"))
    assert len(written) == 2 * 3 and f"wrote {len(written)} adversarial sets" in result.stdout
    for path in written:
        scenario, name = path.parts
        worst_case, eps = name.removesuffix(".pt").split("_eps")
        assert worst_case != "worst-case-channel"
        images = torch.load(tmp_path / "rb" / path)
        assert images.shape == (32, 3, 32, 32) and images.dtype == torch.float32
        assert torch.equal(images * 255, torch.round(images * 255))  # whole 8-bit levels
        about = json.loads((tmp_path / "rb" / path).with_suffix(".json").read_text())
        predicted = defenders[scenario].predict(images, test_ids).numpy()
        wrong = int((predicted != np.asarray(about["labels"])).sum())
        row = next(
            r
            for r in results
            if (r["scenario"], r["evaluation"]) == (scenario, worst_case)
            and abs(r["epsilon"] - float(eps)) < 1e-6
        )
        assert wrong == round(row["error"] * row["n"]) and about["n"] == 32
