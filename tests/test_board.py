"""The board of key-based defences: ``lie-ray board`` as a user runs it on a slice of ``lie-ray
sweep --preset board`` (the ``xor_board`` fixture: Plain and a plug-in's XOR scenario, the test
slice's budgets), its figures checked against the tables the run wrote (results.parquet's worst
cases, privacy.parquet's reconstructions), not against the cards it reads; then the ranking,
the whole-key warning, a plug-in transform's row and two runs holding one scenario name, on
cards made here; and a folder that is no finished run, refused in one line."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import lie_ray
from PIL import Image

from lie_ray.attacks.spec import WORST_CASE, WORST_CASE_KEYLESS
from lie_ray.report.board import write_board


def board(*args) -> subprocess.CompletedProcess:
    return lie_ray("board", *args, timeout=300)


def test_an_embedded_sweep_keeps_its_ray_sessions_logs_under_out(xor_board):
    """The quiet console forwards no worker output; a sweep that ran its own Ray copies the
    session's logs into OUT/logs/ray, the trials' and Train workers' among them."""
    logs = xor_board / "logs" / "ray"
    workers = list(logs.glob("worker-*.out")) + list(logs.glob("worker-*.err"))
    assert workers and (logs / "raylet.out").stat().st_size > 0
    assert any(":actor_name:RayTrainWorker" in w.read_text(errors="replace") for w in workers)


def test_the_board_of_a_sweep_shows_what_its_tables_hold(xor_board, tmp_path):
    out = xor_board
    result = board(out, "--out", tmp_path / "board")
    assert result.returncode == 0, result.stderr[-3000:]
    document = json.loads((tmp_path / "board" / "board.json").read_text())
    results = pq.read_table(out / "results.parquet").to_pylist()
    error = {(r["scenario"], r["evaluation"], round(r["epsilon"], 6)): r["error"] for r in results}
    defences = {d["defence"]: d for d in document["defences"]}
    assert set(defences) == {r["scenario"] for r in results}
    for name, defence in defences.items():
        assert math.isclose(defence["clean_acc"], 1 - error[(name, "test", 0.0)], abs_tol=1e-4)
        for worst_case, label in ((WORST_CASE_KEYLESS, "keyless"), (WORST_CASE, "with key")):
            expected = error.get((name, worst_case, 0.1))
            shown = defence["robust_acc"][f"{label} 0.1000"]
            assert shown is not None and math.isclose(shown, 1 - expected, abs_tol=1e-6)
        assert defence["robust_acc"]["keyless 0.0314"] is None  # the slice ran eps 0 and 0.1
    keyless = [d["robust_acc"]["keyless 0.1000"] for d in document["defences"]]
    assert keyless == sorted(keyless, reverse=True)
    # privacy: the best ciphertext-only SSIM of the run's own transform, from privacy.parquet
    privacy = pq.read_table(out / "privacy.parquet").to_pylist()
    encrypted = next(d for d in document["defences"] if d["transform"] != "none")
    only = [
        r["ssim"]
        for r in privacy
        if r["transform"] == encrypted["transform"]
        and r["block_size"] == encrypted["block_size"]
        and r["threat_model"].startswith("ciphertext-only")
        and r["ssim"] is not None
    ]
    assert encrypted["ciphertext_only_ssim"] == pytest.approx(max(only), abs=1e-4)
    table = (tmp_path / "board" / "board.md").read_text()
    assert all(f"| {name} |" in table or f"| {name} (unreliable) |" in table for name in defences)
    with Image.open(tmp_path / "board" / "board.png") as picture:
        assert picture.size[0] > 100 and picture.size[1] > 100
    # a second run into the same folder gives the same board
    first = (tmp_path / "board" / "board.json").read_bytes()
    again = board(out, "--out", tmp_path / "board")
    assert again.returncode == 0, again.stderr[-3000:]
    assert (tmp_path / "board" / "board.json").read_bytes() == first


def test_a_folder_that_is_no_finished_run_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    result = board(tmp_path / "empty", "--out", tmp_path / "board")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "cards" in lines[0] and "--out folder" in lines[0]
    assert not (tmp_path / "board").exists() or not any((tmp_path / "board").iterdir())


def card(name: str, transform: str, keyless: float, holder: float, fits: dict) -> dict:
    tier = {"0.031373": {"robust_acc": keyless}, "0.100000": {"robust_acc": keyless / 2}}
    return {
        "name": name,
        "architecture": "ResNet18 (width 8)",
        "clean_acc": "80.00",
        "unreliable": False,
        "lie_ray": {
            "transform": transform,
            "block_size": None if transform == "none" else 4,
            "run_id": f"run-{name}",
            "key_fingerprint": "" if transform == "none" else "ab12",
            "test_images": 100,
            "tiers": {
                WORST_CASE_KEYLESS: tier,
                WORST_CASE: {"0.031373": {"robust_acc": holder}},
            },
            "fits": fits,
            "published": None,
        },
    }


def write_cards(folder: Path, cards: list[dict]) -> Path:
    (folder / "cards").mkdir(parents=True)
    for made in cards:
        (folder / "cards" / f"{made['name']}.json").write_text(json.dumps(made))
    return folder


def test_ranking_the_whole_key_a_plug_in_and_one_name_in_two_runs(tmp_path):
    whole = {"fit": {"kind": "key search", "key_share": 1.0}}
    part = {"fit": {"kind": "bypass", "key_share_read": 0.4}}
    first = write_cards(
        tmp_path / "first",
        [
            card("Plain", "none", 0.0, 0.0, {}),
            card("NP", "np", 0.30, 0.01, whole),
            card("xor", "xor", 0.55, 0.02, part),  # a plug-in's transform, by its own name
        ],
    )
    second = write_cards(tmp_path / "second", [card("NP", "np", 0.30, 0.05, part)])
    written = write_board([first, second], tmp_path / "board")
    rows = json.loads(written[1].read_text())["defences"]
    assert [r["defence"] for r in rows] == ["xor", "NP (second)", "NP (first)", "Plain"]
    by_name = {r["defence"]: r for r in rows}
    assert by_name["NP (first)"]["weights_give_the_key_away"]
    assert not by_name["NP (second)"]["weights_give_the_key_away"]
    assert by_name["xor"]["key_share_from_weights"] == 0.4
    table = written[0].read_text()
    assert table.count("anyone with the model decrypts every image") == 1
