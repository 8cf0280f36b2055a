"""Issue 6: every bad input is one line naming the problem and the fix, exit status 2, no
traceback, no partial output, and it is rejected BEFORE Ray starts.

Ray is forbidden in this module: ``ray_session`` and ``ray.init`` fail the test if reached, so
a CLI case passes only if the command rejects the input in its driver, before any cluster work.
Cases that have no CLI path without Ray (float tensors into the cipher, attack objects) are
checked on the library function the CLI's pre-flight calls.
"""
from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from typer.testing import CliRunner

import lie_ray.cli
import lie_ray.runtime
from lie_ray.attacks import FGSM, PGD, SquareAttack
from lie_ray.cipher import cipher_with_grad, from_permutation
from lie_ray.cli import app
from lie_ray.data.cifar import SPLIT_FILES, check_dataset, load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import (check_block_size, generate_key, import_permutation, load_key,
                          save_key)
from lie_ray.policies import load_key_for_policies
from lie_ray.scenarios import PAPER_SCENARIOS, Scenario, key_for_scenarios

runner = CliRunner()


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Starting Ray fails the test: every input here must be rejected before it."""
    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started: this bad input must be rejected before it")

    @contextlib.contextmanager
    def refuse_session(*args, **kwargs):
        refuse()
        yield

    monkeypatch.setattr(lie_ray.runtime, "ray_session", refuse_session)
    monkeypatch.setattr(lie_ray.cli, "ray_session", refuse_session, raising=False)
    monkeypatch.setattr(ray, "init", refuse)


# ------------------------------------------------------------------------------- helpers
def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def assert_rejected(result, *fragments: str) -> str:
    """Exit 2, exactly one stderr line 'error: ...' holding every fragment, nothing else."""
    assert result.exit_code == 2, (result.output, result.exception)
    assert "Traceback" not in result.output
    assert result.stdout == "", result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, (fragment, result.stderr)
    return result.stderr


def assert_one_line(caught, *fragments: str) -> None:
    message = str(caught.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def write_batch(path: Path, data, labels) -> None:
    with open(path, "wb") as handle:
        pickle.dump({"data": data, "labels": labels}, handle)


@pytest.fixture
def cifar(tmp_path) -> Path:
    """A tiny but valid cifar-10-batches-py: two random images per batch file."""
    directory = tmp_path / "cifar-10-batches-py"
    directory.mkdir()
    rng = np.random.default_rng(0)
    for name in SPLIT_FILES["train"] + SPLIT_FILES["test"]:
        write_batch(directory / name, rng.integers(0, 256, (2, 3072), dtype=np.uint8), [3, 7])
    return directory


def write_key_record(path: Path, record, mode: int = 0o600) -> Path:
    path.write_text(json.dumps(record))
    os.chmod(path, mode)
    return path


@pytest.fixture
def key_path(tmp_path) -> Path:
    return save_key(generate_key(block_size=4), tmp_path / "keys" / "master.json")


def bad_key(kind: str, tmp_path: Path) -> Path:
    """A key file damaged in one way."""
    path = tmp_path / "bad" / f"{kind}.json"
    path.parent.mkdir(exist_ok=True)
    good = json.loads(generate_key(block_size=4).to_json())
    if kind == "missing":
        return path
    if kind == "truncated":
        path.write_text(json.dumps(good)[:40])
    elif kind == "binary":
        path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-a-key":
        path.write_text("[1, 2, 3]")
    elif kind == "short-secret":
        path.write_text(json.dumps({**good, "secret": base64.b64encode(bytes(16)).decode()}))
    elif kind == "bad-block-field":
        path.write_text(json.dumps({**good, "block_size": "4"}))
    elif kind == "version-2":
        path.write_text(json.dumps({**good, "version": 2}))
    elif kind in ("mode-644", "mode-640"):
        path.write_text(json.dumps(good))
        os.chmod(path, int(kind[-3:], 8))
        return path
    elif kind in ("block-8", "block-5"):
        save_key(generate_key(block_size=int(kind[-1])), path)
    elif kind == "permutation":
        save_key(import_permutation(np.random.default_rng(1).permutation(96), 4), path)
    else:
        raise ValueError(kind)
    os.chmod(path, 0o600)
    return path


KEY_PROBLEMS = {  # kind -> (problem, fix) fragments of the one error line
    "missing": ("not found", "lie-ray keygen --out"),
    "truncated": ("truncated or not JSON", "lie-ray keygen"),
    "binary": ("truncated or not JSON", "restore it from a backup"),
    "empty": ("truncated or not JSON", "lie-ray keygen"),
    "not-a-key": ("is not a lie_ray key file", "written by 'lie-ray keygen'"),
    "short-secret": ("has 16 bytes, expected 32", "lie-ray keygen"),
    "bad-block-field": ("invalid block_size", "lie-ray keygen"),
    "version-2": ("has version 2", "upgrade lie_ray or re-create the key"),
    "mode-644": ("readable by group or others (mode 644)", "chmod 600"),
    "mode-640": ("readable by group or others (mode 640)", "chmod 600"),
}


# ------------------------------------------------------------------ key files, CLI level
@pytest.mark.parametrize("kind", sorted(KEY_PROBLEMS))
def test_key_info_rejects_damaged_keys(tmp_path, kind):
    path = bad_key(kind, tmp_path)
    before = path.read_bytes() if path.exists() else None
    assert_rejected(invoke("key-info", path), str(path), *KEY_PROBLEMS[kind])
    assert (path.read_bytes() if path.exists() else None) == before


@pytest.mark.parametrize("kind", ["missing", "truncated", "version-2", "mode-644"])
def test_train_rejects_damaged_keys_before_ray(tmp_path, cifar, kind):
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--out", out, "--scenarios", "Encrypted",
                           "--key", bad_key(kind, tmp_path)), *KEY_PROBLEMS[kind])
    assert not out.exists()


@pytest.mark.parametrize("kind, fragments", [
    ("block-8", ("made for block size 8", "'lie-ray keygen --block-size 4'")),
    ("block-5", ("made for block size 5", "'lie-ray keygen --block-size 4'")),
])
def test_train_rejects_a_key_for_another_block_size(tmp_path, cifar, kind, fragments):
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--out", out, "--scenarios", "Encrypted",
                           "--key", bad_key(kind, tmp_path)), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("scenarios, kind, fragments", [
    ("Encrypted", None, ("encrypted scenarios need a key", "pass --key FILE")),
    ("Encrypted-DK", "permutation", ("needs a master key", "lie-ray keygen")),
], ids=["no-key", "permutation-key-per-batch"])
def test_train_rejects_a_missing_or_unsuitable_key_before_ray(tmp_path, cifar, scenarios, kind,
                                                              fragments):
    out = tmp_path / "out"
    key_args = ["--key", bad_key(kind, tmp_path)] if kind else []
    assert_rejected(invoke("train", "--data", cifar, "--out", out, "--scenarios", scenarios,
                           *key_args), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("kind, policy, fragments", [
    ("missing", "fixed", KEY_PROBLEMS["missing"]),
    ("binary", "fixed", KEY_PROBLEMS["binary"]),
    ("version-2", "fixed", KEY_PROBLEMS["version-2"]),
    ("mode-644", "fixed", KEY_PROBLEMS["mode-644"]),
    ("block-5", "fixed", ("block size 5 does not divide the image size 32x32", "--block-size")),
    ("permutation", "per-batch", ("needs a master key", "lie-ray keygen")),
])
def test_encrypt_rejects_bad_keys_before_ray(tmp_path, cifar, kind, policy, fragments):
    out = tmp_path / "out"
    assert_rejected(invoke("encrypt", "--data", cifar, "--key", bad_key(kind, tmp_path),
                           "--policy", policy, "--out", out), *fragments)
    assert not out.exists()


def test_encrypt_with_a_corrupt_key_leaves_an_existing_out_unchanged(tmp_path, cifar):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    assert_rejected(invoke("encrypt", "--data", cifar, "--key", bad_key("truncated", tmp_path),
                           "--out", out), "truncated or not JSON")
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert (out / "manifest.json").read_text() == "{}"


# ------------------------------------------------------------------------ keygen, CLI level
def test_keygen_rejects_a_non_positive_block_size_and_writes_nothing(tmp_path):
    out = tmp_path / "keys" / "k.json"
    assert_rejected(invoke("keygen", "--out", out, "--block-size", "0"),
                    "block size must be a positive integer, got 0", "--block-size 2, 4 or 8")
    assert not out.exists() and not out.parent.exists()


def test_keygen_force_with_a_bad_block_size_leaves_the_old_key(tmp_path, key_path):
    before = key_path.read_bytes()
    assert_rejected(invoke("keygen", "--out", key_path, "--block-size", "0", "--force"),
                    "positive integer")
    assert key_path.read_bytes() == before
    assert [p.name for p in key_path.parent.iterdir()] == ["master.json"]  # no temp file


def test_keygen_rejects_a_block_size_that_does_not_divide_the_image(tmp_path):
    out = tmp_path / "k5.json"
    assert_rejected(invoke("keygen", "--out", out, "--block-size", "5"),
                    "block size 5 does not divide the image size 32x32", "use one of 1, 2, 4, 8")
    assert not out.exists()


def test_keygen_into_a_directory_or_under_a_file_fails_cleanly(tmp_path):
    assert_rejected(invoke("keygen", "--out", tmp_path, "--force"), "is a directory",
                    f"--out {tmp_path / 'master.json'}")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_rejected(invoke("keygen", "--out", blocker / "k.json"), "cannot write key file",
                    "choose a writable --out path")
    assert blocker.read_text() == "x"


# ---------------------------------------------------- scenarios, presets, ranges: CLI level
TRAIN_REJECTS = {
    "preset": (["--preset", "nope"], ("unknown preset 'nope'", "choose one of paper, smoke")),
    "scenario": (["--scenarios", "Plain,Nope"], ("unknown scenario 'Nope'", "choose from Plain")),
    "no-scenario": (["--scenarios", ","], ("names no scenario", "leave it out")),
    "eps-big": (["--pgd-eps", "2"], ("eps must lie in (0, 1]", "got 2.0", "pass --pgd-eps")),
    "eps-zero": (["--pgd-eps", "0"], ("eps must lie in (0, 1]", "pass --pgd-eps")),
    "eps-nan": (["--pgd-eps", "nan"], ("eps must lie in (0, 1]", "got nan", "--pgd-eps")),
    "eps-inf": (["--pgd-eps", "inf"], ("eps must lie in (0, 1]", "got inf", "--pgd-eps")),
    "step-zero": (["--pgd-step-size", "0"], ("step size must lie in (0, 1]",
                                             "pass --pgd-step-size")),
    "step-big": (["--pgd-step-size", "1.5"], ("step size must lie in (0, 1]", "--pgd-step-size")),
    "steps-zero": (["--pgd-steps", "0"], ("steps must be an integer in 1..10000",
                                          "pass --pgd-steps")),
    "steps-big": (["--pgd-steps", "10001"], ("steps must be an integer in 1..10000",
                                             "--pgd-steps")),
    "lr-nan": (["--lr", "nan"], ("learning rates must be positive and finite", "pass --lr")),
    "lr-negative": (["--lr", "-1"], ("learning rates must be positive", "pass --lr")),
    "gpu": (["--gpu", "maybe"], ("gpu must be auto, yes or no", "'maybe'")),
}


@pytest.mark.parametrize("case", sorted(TRAIN_REJECTS))
def test_train_rejects_bad_settings_before_ray(tmp_path, case):
    args, fragments = TRAIN_REJECTS[case]
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--out", out, *args), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("text, fragments", [
    ("[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\neps = 2\n",
     ("scenario 'X': eps must lie in (0, 1]", "the scenario's eps")),
    ("[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\nsteps = 0\n",
     ("scenario 'X': steps must be an integer", "the scenario's steps")),
    ("[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'per-epoch'\n",
     ("key_policy must be one of fixed, per-batch", "'per-epoch'")),
    ("[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\ntransform = 'rot13'\n",
     ("scenario 'X': unknown transform 'rot13'", "choose one of le, ele")),
    ("[[scenario]\nname =", ("is not valid TOML", "fix that line")),
    ("scenario = 3\n", ("[[scenario]] table", "see the README")),
], ids=["eps", "steps", "policy", "transform", "syntax", "shape"])
def test_train_rejects_bad_scenario_files_before_ray(tmp_path, text, fragments):
    path, out = tmp_path / "my.toml", tmp_path / "out"
    path.write_text(text)
    assert_rejected(invoke("train", "--out", out, "--scenario-file", path), *fragments)
    assert not out.exists()


def test_train_rejects_a_missing_scenario_file(tmp_path):
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--out", out, "--scenario-file", tmp_path / "none.toml"),
                    "none.toml not found", "check the --scenario-file path")
    assert not out.exists()


@pytest.mark.parametrize("args, fragments", [
    (["--preset", "nope"], ("unknown preset 'nope'", "choose one of")),
    (["--epsilons", "0,2"], ("epsilons must lie in [0, 1]", "2.0")),
    (["--epsilons", "-0.1"], ("epsilons must lie in [0, 1]",)),
    (["--epsilons", "nan"], ("epsilons must lie in [0, 1]", "nan")),
    (["--epsilons", "a,b"], ("--epsilons must be comma-separated numbers", "'a,b'")),
], ids=["preset", "eps-big", "eps-negative", "eps-nan", "eps-text"])
def test_evaluate_rejects_bad_settings_before_ray(tmp_path, args, fragments):
    out = tmp_path / "out"
    assert_rejected(invoke("evaluate", "--runs", tmp_path, "--out", out, *args), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("args, fragments", [
    (["--preset", "nope"], ("unknown preset 'nope'",)),
    (["--scenarios", "Nope"], ("unknown scenario 'Nope'",)),
    (["--pgd-eps", "2"], ("eps must lie in (0, 1]", "--pgd-eps")),
], ids=["preset", "scenario", "eps"])
def test_sweep_rejects_bad_settings_before_ray(tmp_path, args, fragments):
    out = tmp_path / "out"
    assert_rejected(invoke("sweep", "--out", out, *args), *fragments)
    assert not out.exists()


# ---------------------------------------------------------------------- data, CLI level
def damage(directory: Path, how: str) -> tuple[str, tuple[str, ...]]:
    """Damage a valid CIFAR directory one way; return the split it hits and the error fragments."""
    test_batch = directory / "test_batch"
    if how == "missing-dir":
        where = directory.resolve()
        for path in directory.iterdir():
            path.unlink()
        directory.rmdir()
        return "test", (f"no CIFAR-10 data at {where}", "pass --data DIR", "--download")
    if how == "missing-file":
        (directory / "data_batch_3").unlink()
        return "train", ("data_batch_3 is missing", "--download")
    if how == "truncated":
        blob = test_batch.read_bytes()
        test_batch.write_bytes(blob[: len(blob) // 2])
    elif how == "garbage":
        test_batch.write_bytes(b"\x00garbage" * 50)
    elif how == "zero-bytes":
        test_batch.write_bytes(b"")
    if how in ("truncated", "garbage", "zero-bytes"):
        return "test", ("test_batch is corrupt or truncated", "replace it with a fresh copy")
    if how == "not-a-dict":
        with open(test_batch, "wb") as handle:
            pickle.dump([1, 2, 3], handle)
        return "test", ("lacks 'data' and 'labels'", "replace it with a fresh copy")
    if how == "wrong-shape":
        write_batch(test_batch, np.zeros((2, 100), dtype=np.uint8), [0, 1])
        return "test", ("shape (2, 100)", "expected uint8 rows of 3072 bytes", "replace it")
    if how == "wrong-dtype":
        write_batch(test_batch, np.zeros((2, 3072), dtype=np.float32), [0, 1])
        return "test", ("dtype float32", "expected uint8 rows", "replace it")
    if how == "bad-labels":
        write_batch(test_batch, np.zeros((2, 3072), dtype=np.uint8), [0, 10])
        return "test", ("labels outside 0..9", "replace it with a fresh copy")
    if how == "text-labels":
        write_batch(test_batch, np.zeros((2, 3072), dtype=np.uint8), ["cat", "dog"])
        return "test", ("not arrays of numbers", "replace it with a fresh copy")
    if how == "empty-test":
        write_batch(test_batch, np.zeros((0, 3072), dtype=np.uint8), [])
        return "test", ("the test split", "holds no images", "restore the dataset")
    if how == "empty-train":
        for name in SPLIT_FILES["train"]:
            write_batch(directory / name, np.zeros((0, 3072), dtype=np.uint8), [])
        return "train", ("the train split", "holds no images", "restore the dataset")
    raise ValueError(how)


DATA_PROBLEMS = ["missing-dir", "missing-file", "truncated", "garbage", "zero-bytes",
                 "not-a-dict", "wrong-shape", "wrong-dtype", "bad-labels", "text-labels",
                 "empty-test", "empty-train"]


@pytest.mark.parametrize("how", DATA_PROBLEMS)
def test_data_problems_are_one_line_errors_naming_the_fix(cifar, how):
    split, fragments = damage(cifar, how)
    with pytest.raises(LieRayError) as caught:
        load_split(cifar, split)
    assert_one_line(caught, *fragments)
    with pytest.raises(LieRayError) as caught:  # the pre-flight the jobs run before Ray
        check_dataset(cifar)
    assert_one_line(caught, *fragments)


def test_check_dataset_accepts_good_data_and_returns_the_batches_directory(cifar):
    assert check_dataset(cifar.parent) == cifar.resolve()


def test_train_and_evaluate_reject_a_missing_data_directory_before_ray(tmp_path, cifar,
                                                                      key_path):
    _, fragments = damage(cifar, "missing-dir")
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--key", key_path, "--out", out),
                    *fragments)
    assert_rejected(invoke("evaluate", "--runs", runs_dir(tmp_path), "--data", cifar,
                           "--key", key_path, "--out", out), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("how", ["truncated", "wrong-shape", "empty-test"])
def test_train_rejects_damaged_data_before_ray(tmp_path, cifar, key_path, how):
    _, fragments = damage(cifar, how)
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--key", key_path, "--out", out),
                    *fragments)
    assert not out.exists()


@pytest.mark.parametrize("how", ["missing-dir", "garbage", "wrong-dtype", "empty-train"])
def test_encrypt_rejects_damaged_data_before_ray(tmp_path, cifar, key_path, how):
    _, fragments = damage(cifar, how)
    out = tmp_path / "out"
    assert_rejected(invoke("encrypt", "--data", cifar, "--key", key_path, "--out", out),
                    *fragments)
    assert not out.exists()


def runs_dir(tmp_path: Path, encrypted: bool = False) -> Path:
    """What 'lie-ray evaluate --runs' reads: a training.parquet naming one scenario."""
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    name, policy = ("Encrypted", "fixed") if encrypted else ("Plain", "")
    pq.write_table(pa.Table.from_pylist([{
        "scenario": name, "encrypted": encrypted, "key_policy": policy, "adversarial": False,
        "checkpoint": str(runs / "checkpoint"), "train_error": 0.5, "test_error": 0.5}]),
        runs / "training.parquet")
    return runs


@pytest.mark.parametrize("problem", ["damaged-data", "damaged-key", "no-key"])
def test_evaluate_rejects_damaged_data_and_keys_before_ray(tmp_path, cifar, key_path, problem):
    out = tmp_path / "out"
    args = ["evaluate", "--runs", runs_dir(tmp_path, encrypted=True), "--data", cifar,
            "--out", out]
    if problem == "damaged-data":
        _, fragments = damage(cifar, "truncated")
        args += ["--key", key_path]
    elif problem == "damaged-key":
        fragments = KEY_PROBLEMS["version-2"]
        args += ["--key", bad_key("version-2", tmp_path)]
    else:
        fragments = ("need", "--key")
    assert_rejected(invoke(*args), *fragments)
    assert not out.exists()


def test_sweep_rejects_damaged_data_before_ray(tmp_path, cifar, key_path):
    _, fragments = damage(cifar, "garbage")
    out = tmp_path / "out"
    assert_rejected(invoke("sweep", "--data", cifar, "--key", key_path, "--out", out),
                    *fragments)
    assert not out.exists()


def test_evaluate_rejects_runs_without_training_table_before_ray(tmp_path, cifar):
    out = tmp_path / "out"
    assert_rejected(invoke("evaluate", "--runs", tmp_path / "none", "--data", cifar,
                           "--out", out), "training.parquet", "pass as --runs")
    assert not out.exists()


# ------------------------------------------------ the pre-flight key checks, library level
def test_key_pre_flight_checks(tmp_path, key_path):
    encrypted = [PAPER_SCENARIOS["Plain"], PAPER_SCENARIOS["Encrypted-DK"]]
    assert key_for_scenarios([PAPER_SCENARIOS["Plain"]], None, block_size=4) is None
    assert key_for_scenarios(encrypted, key_path, 4).fingerprint == load_key(key_path).fingerprint
    cases = [
        (lambda: key_for_scenarios(encrypted, None, 4), ("need a key", "pass --key FILE")),
        (lambda: key_for_scenarios(encrypted, bad_key("block-8", tmp_path), 4),
         ("made for block size 8", "--block-size 4")),
        (lambda: key_for_scenarios(encrypted, bad_key("permutation", tmp_path), 4),
         ("needs a master key", "lie-ray keygen")),
        (lambda: load_key_for_policies(bad_key("block-5", tmp_path), ["fixed"]),
         ("block size 5 does not divide the image size 32x32", "use one of 1, 2, 4, 8")),
        (lambda: load_key_for_policies(key_path, ["per-image"]),
         ("unknown key policy 'per-image'", "choose one of fixed, per-batch")),
        (lambda: load_key_for_policies(key_path, ["per-batch"], key_batch_size=0),
         ("group size must be >= 1", "--key-batch-size")),
    ]
    for call, fragments in cases:
        with pytest.raises(LieRayError) as caught:
            call()
        assert_one_line(caught, *fragments)


def test_unreadable_key_file_is_a_one_line_error(key_path, monkeypatch):
    # Root reads any file whatever its mode, so simulate the failed read.
    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(LieRayError) as caught:
        load_key(key_path)
    assert_one_line(caught, "cannot be read (PermissionError)", "chmod 600")


# --------------------------------------------- block size and cipher input, library level
@pytest.mark.parametrize("block_size, fragments", [
    (5, ("block size 5 does not divide the image size 32x32", "use one of 1, 2, 4, 8")),
    (3, ("block size 3 does not divide", "--block-size")),
    (0, ("must be a positive integer, got 0", "--block-size 2, 4 or 8")),
    (-4, ("must be a positive integer, got -4", "--block-size")),
    (4.0, ("must be a positive integer, got 4.0",)),
])
def test_check_block_size(block_size, fragments):
    with pytest.raises(LieRayError) as caught:
        check_block_size(block_size)
    assert_one_line(caught, *fragments)
    for good in (1, 2, 4, 8, 16, 32):
        check_block_size(good)


def block3_cipher():
    return from_permutation(np.random.default_rng(2).permutation(2 * 3 * 3 * 3), block_size=3)


@pytest.mark.parametrize("call", [
    lambda c: c.encrypt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
    lambda c: c.decrypt(torch.rand(2, 3, 32, 32)),
    lambda c: cipher_with_grad(c, torch.rand(1, 3, 32, 32), "bpda-both"),
    lambda c: cipher_with_grad(c, torch.rand(1, 3, 32, 32), "none"),
], ids=["torch-uint8", "torch-float-decrypt", "bpda", "plain-autograd"])
def test_block_size_that_does_not_divide_the_image_on_every_torch_path(call):
    with pytest.raises(LieRayError) as caught:
        call(block3_cipher())
    assert_one_line(caught, "block size 3 does not divide the image size 32x32",
                    "use a block size that divides both")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")],
                         ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("call", [
    lambda c, x: c.encrypt(x),
    lambda c, x: c.decrypt(x.double()),
    lambda c, x: c.encrypt(x.half()),
    lambda c, x: c.encrypt(x[1]),  # a single CHW image (the one holding the bad value)
    lambda c, x: cipher_with_grad(c, x, "bpda-both"),
    lambda c, x: cipher_with_grad(c, x, "bpda-high"),
    lambda c, x: cipher_with_grad(c, x, "none"),
], ids=["encrypt", "decrypt-f64", "encrypt-f16", "encrypt-chw", "bpda-both", "bpda-high",
        "plain-autograd"])
def test_non_finite_float_input_is_rejected_on_every_cipher_path(call, bad):
    cipher = from_permutation(np.random.default_rng(3).permutation(96), block_size=4)
    images = torch.rand(2, 3, 8, 8)
    images[1, 2, 5, 6] = bad
    with pytest.raises(LieRayError) as caught:
        call(cipher, images)
    assert_one_line(caught, "NaN or infinite", "check the attack or the data loader")


# ------------------------------------------------------------ attack settings, library level
def classifier(x):
    return x.flatten(1)[:, :2]


@pytest.mark.parametrize("make, fragments", [
    (lambda: FGSM(classifier, eps=float("nan")), ("eps must lie in [0, 1]", "nan")),
    (lambda: PGD(classifier, eps=float("inf")), ("eps must lie in [0, 1]", "inf")),
    (lambda: PGD(classifier, step_size=float("nan")), ("step size must lie in (0, 1]",)),
    (lambda: PGD(classifier, steps=2.5), ("whole number of steps", "2.5")),
    (lambda: SquareAttack(classifier, eps=float("nan")), ("eps must lie in [0, 1]",)),
    (lambda: SquareAttack(classifier, queries=1.5), ("whole number of queries",)),
    (lambda: Scenario("S", encrypted=False, eps=float("nan")),
     ("scenario 'S': eps must lie in (0, 1]", "--pgd-eps")),
    (lambda: Scenario("S", encrypted=False, step_size="0.1"),
     ("step size must lie in (0, 1], got '0.1'", "--pgd-step-size")),
    (lambda: Scenario("S", encrypted=False, steps=True),
     ("steps must be an integer in 1..10000, got True", "--pgd-steps")),
], ids=["fgsm-eps-nan", "pgd-eps-inf", "pgd-step-nan", "pgd-steps-float", "square-eps-nan",
        "square-queries-float", "scenario-eps-nan", "scenario-step-text", "scenario-steps-bool"])
def test_attack_settings_out_of_range_are_one_line_errors(make, fragments):
    with pytest.raises(LieRayError) as caught:
        make()
    assert_one_line(caught, *fragments)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world", "group", "others-only"])
def test_sweep_refuses_a_key_others_can_read(tmp_path, cifar, key_path, mode):
    os.chmod(key_path, mode)
    out = tmp_path / "out"
    assert_rejected(invoke("sweep", "--data", cifar, "--key", key_path, "--out", out),
                    "readable by group or others", f"chmod 600 {key_path}")
    assert not out.exists()
