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
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray
import torch
from typer.testing import CliRunner

import lie_ray.app.cli
import lie_ray.infra.session
from lie_ray.app.cli import app
from lie_ray.attacks import FGSM, PGD
from lie_ray.cipher import cipher_with_grad, from_permutation
from lie_ray.data.cifar import SPLIT_FILES, check_dataset, load_split
from lie_ray.errors import LieRayError
from lie_ray.keys import check_block_size, generate_key, import_permutation, load_key, save_key
from lie_ray.keys.policies import load_key_for_policies
from lie_ray.scenarios import PAPER_SCENARIOS, Scenario, key_for_scenarios
from lie_ray.training.untrained import write_runs

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

    monkeypatch.setattr(lie_ray.infra.session, "ray_session", refuse_session)
    monkeypatch.setattr(lie_ray.app.cli, "ray_session", refuse_session, raising=False)
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
    assert_rejected(
        invoke(
            "train",
            "--data",
            cifar,
            "--out",
            out,
            "--scenarios",
            "Encrypted",
            "--key",
            bad_key(kind, tmp_path),
        ),
        *KEY_PROBLEMS[kind],
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "kind, fragments",
    [
        ("block-8", ("made for block size 8", "'lie-ray keygen --block-size 4'")),
        ("block-5", ("made for block size 5", "'lie-ray keygen --block-size 4'")),
    ],
)
def test_train_rejects_a_key_for_another_block_size(tmp_path, cifar, kind, fragments):
    out = tmp_path / "out"
    assert_rejected(
        invoke(
            "train",
            "--data",
            cifar,
            "--out",
            out,
            "--scenarios",
            "Encrypted",
            "--key",
            bad_key(kind, tmp_path),
        ),
        *fragments,
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "scenarios, kind, fragments",
    [
        ("Encrypted", None, ("encrypted scenarios need a key", "pass --key FILE")),
        ("Encrypted-DK", "permutation", ("needs a master key", "lie-ray keygen")),
    ],
    ids=["no-key", "permutation-key-per-minibatch"],
)
def test_train_rejects_a_missing_or_unsuitable_key_before_ray(
    tmp_path, cifar, scenarios, kind, fragments
):
    out = tmp_path / "out"
    key_args = ["--key", bad_key(kind, tmp_path)] if kind else []
    assert_rejected(
        invoke("train", "--data", cifar, "--out", out, "--scenarios", scenarios, *key_args),
        *fragments,
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "kind, policy, fragments",
    [
        ("missing", "fixed", KEY_PROBLEMS["missing"]),
        ("binary", "fixed", KEY_PROBLEMS["binary"]),
        ("version-2", "fixed", KEY_PROBLEMS["version-2"]),
        ("mode-644", "fixed", KEY_PROBLEMS["mode-644"]),
        ("block-5", "fixed", ("block size 5 does not divide the image size 32x32", "--block-size")),
        ("permutation", "id-group", ("needs a master key", "lie-ray keygen")),
    ],
)
def test_encrypt_rejects_bad_keys_before_ray(tmp_path, cifar, kind, policy, fragments):
    out = tmp_path / "out"
    assert_rejected(
        invoke(
            "encrypt",
            "--data",
            cifar,
            "--key",
            bad_key(kind, tmp_path),
            "--policy",
            policy,
            "--out",
            out,
        ),
        *fragments,
    )
    assert not out.exists()


def test_encrypt_refuses_a_policy_only_training_can_apply(tmp_path, cifar):
    out = tmp_path / "out"
    key = tmp_path / "key.json"
    save_key(generate_key(), key)
    assert_rejected(
        invoke("encrypt", "--data", cifar, "--key", key, "--policy", "per-minibatch", "--out", out),
        "draws a key per training mini-batch",
        "--policy fixed, id-group",
    )
    assert not out.exists()


def test_encrypt_with_a_corrupt_key_leaves_an_existing_out_unchanged(tmp_path, cifar):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text("{}")
    assert_rejected(
        invoke("encrypt", "--data", cifar, "--key", bad_key("truncated", tmp_path), "--out", out),
        "truncated or not JSON",
    )
    assert [p.name for p in out.iterdir()] == ["manifest.json"]
    assert (out / "manifest.json").read_text() == "{}"


# ------------------------------------------------------------------------ keygen, CLI level
def test_keygen_rejects_a_non_positive_block_size_and_writes_nothing(tmp_path):
    out = tmp_path / "keys" / "k.json"
    assert_rejected(
        invoke("keygen", "--out", out, "--block-size", "0"),
        "block size must be a positive integer, got 0",
        "--block-size 2, 4 or 8",
    )
    assert not out.exists() and not out.parent.exists()


def test_keygen_force_with_a_bad_block_size_leaves_the_old_key(tmp_path, key_path):
    before = key_path.read_bytes()
    assert_rejected(
        invoke("keygen", "--out", key_path, "--block-size", "0", "--force"), "positive integer"
    )
    assert key_path.read_bytes() == before
    assert [p.name for p in key_path.parent.iterdir()] == ["master.json"]  # no temp file


def test_keygen_rejects_a_block_size_that_does_not_divide_the_image(tmp_path):
    out = tmp_path / "k5.json"
    assert_rejected(
        invoke("keygen", "--out", out, "--block-size", "5"),
        "block size 5 does not divide the image size 32x32",
        "use one of 1, 2, 4, 8",
    )
    assert not out.exists()


def test_keygen_into_a_directory_or_under_a_file_fails_cleanly(tmp_path):
    assert_rejected(
        invoke("keygen", "--out", tmp_path, "--force"),
        "is a directory",
        f"--out {tmp_path / 'master.json'}",
    )
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_rejected(
        invoke("keygen", "--out", blocker / "k.json"),
        "cannot be created",
        f"{blocker} is a file, not a directory",
        "choose another --out path",
    )
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
    "step-zero": (
        ["--pgd-step-size", "0"],
        ("step size must lie in (0, 1]", "pass --pgd-step-size"),
    ),
    "step-big": (["--pgd-step-size", "1.5"], ("step size must lie in (0, 1]", "--pgd-step-size")),
    "steps-zero": (
        ["--pgd-steps", "0"],
        ("steps must be an integer in 1..10000", "pass --pgd-steps"),
    ),
    "steps-big": (
        ["--pgd-steps", "10001"],
        ("steps must be an integer in 1..10000", "--pgd-steps"),
    ),
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


@pytest.mark.parametrize(
    "text, fragments",
    [
        (
            "[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\neps = 2\n",
            ("scenario 'X': eps must lie in (0, 1]", "the scenario's eps"),
        ),
        (
            "[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\nsteps = 0\n",
            ("scenario 'X': steps must be an integer", "the scenario's steps"),
        ),
        (
            "[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'per-epoch'\n",
            (
                "scenario 'X': unknown key policy 'per-epoch'",
                "choose one of fixed, id-group, per-minibatch, per-image",
            ),
        ),
        (
            "[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'per-batch'\n",
            ("'per-batch' is retired", "choose 'per-minibatch'", "'id-group'"),
        ),
        (
            "[[scenario]]\nname = 'X'\nencrypted = true\nkey_policy = 'fixed'\n"
            "transform = 'rot13'\n",
            ("scenario 'X': unknown transform 'rot13'", "choose one of le, ele"),
        ),
        ("[[scenario]\nname =", ("is not valid TOML", "fix that line")),
        ("scenario = 3\n", ("[[scenario]] table", "see docs/training.md")),
    ],
    ids=["eps", "steps", "policy", "retired-policy", "transform", "syntax", "shape"],
)
def test_train_rejects_bad_scenario_files_before_ray(tmp_path, text, fragments):
    path, out = tmp_path / "my.toml", tmp_path / "out"
    path.write_text(text)
    assert_rejected(invoke("train", "--out", out, "--scenario-file", path), *fragments)
    assert not out.exists()


def test_train_rejects_a_missing_scenario_file(tmp_path):
    out = tmp_path / "out"
    assert_rejected(
        invoke("train", "--out", out, "--scenario-file", tmp_path / "none.toml"),
        "none.toml not found",
        "check the --scenario-file path",
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--preset", "nope"], ("unknown preset 'nope'", "choose one of")),
        (["--epsilons", "0,2"], ("epsilons must lie in [0, 1]", "2.0")),
        (["--epsilons", "-0.1"], ("epsilons must lie in [0, 1]",)),
        (["--epsilons", "nan"], ("epsilons must lie in [0, 1]", "nan")),
        (["--epsilons", "a,b"], ("--epsilons must be comma-separated numbers", "'a,b'")),
        (["--gpu", "maybe"], ("--gpu must be auto, yes or no", "'maybe'")),
    ],
    ids=["preset", "eps-big", "eps-negative", "eps-nan", "eps-text", "gpu"],
)
def test_evaluate_rejects_bad_settings_before_ray(tmp_path, args, fragments):
    out = tmp_path / "out"
    assert_rejected(invoke("evaluate", "--runs", tmp_path, "--out", out, *args), *fragments)
    assert not out.exists()


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--preset", "nope"], ("unknown preset 'nope'",)),
        (["--scenarios", "Nope"], ("unknown scenario 'Nope'",)),
        (["--pgd-eps", "2"], ("eps must lie in (0, 1]", "--pgd-eps")),
        (
            ["--privacy-transforms", "le,rot13"],
            ("unknown transform(s) rot13", "choose from le, ele", "(--privacy-transforms)"),
        ),
        (["--privacy-transforms", " , "], ("--privacy-transforms names no transform",)),
        (["--privacy-transforms", "le", "--no-privacy"], ("drop one of them",)),
    ],
    ids=["preset", "scenario", "eps", "privacy-unknown", "privacy-empty", "privacy-and-none"],
)
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


DATA_PROBLEMS = [
    "missing-dir",
    "missing-file",
    "truncated",
    "garbage",
    "zero-bytes",
    "not-a-dict",
    "wrong-shape",
    "wrong-dtype",
    "bad-labels",
    "text-labels",
    "empty-test",
    "empty-train",
]


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


def test_train_and_evaluate_reject_a_missing_data_directory_before_ray(tmp_path, cifar, key_path):
    _, fragments = damage(cifar, "missing-dir")
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--key", key_path, "--out", out), *fragments)
    assert_rejected(
        invoke(
            "evaluate",
            "--runs",
            runs_dir(tmp_path),
            "--data",
            cifar,
            "--key",
            key_path,
            "--out",
            out,
        ),
        *fragments,
    )
    assert not out.exists()


@pytest.mark.parametrize("how", ["truncated", "wrong-shape", "empty-test"])
def test_train_rejects_damaged_data_before_ray(tmp_path, cifar, key_path, how):
    _, fragments = damage(cifar, how)
    out = tmp_path / "out"
    assert_rejected(invoke("train", "--data", cifar, "--key", key_path, "--out", out), *fragments)
    assert not out.exists()


@pytest.mark.parametrize("how", ["missing-dir", "garbage", "wrong-dtype", "empty-train"])
def test_encrypt_rejects_damaged_data_before_ray(tmp_path, cifar, key_path, how):
    _, fragments = damage(cifar, how)
    out = tmp_path / "out"
    assert_rejected(invoke("encrypt", "--data", cifar, "--key", key_path, "--out", out), *fragments)
    assert not out.exists()


def runs_dir(tmp_path: Path, encrypted: bool = False) -> Path:
    """What 'lie-ray evaluate --runs' reads: a training.parquet naming one scenario, and its
    (untrained) checkpoint with its run record."""
    runs = tmp_path / "runs"
    write_runs(runs, [PAPER_SCENARIOS["Encrypted" if encrypted else "Plain"]], generate_key())
    return runs


@pytest.mark.parametrize("problem", ["damaged-data", "damaged-key", "no-key"])
def test_evaluate_rejects_damaged_data_and_keys_before_ray(tmp_path, cifar, key_path, problem):
    out = tmp_path / "out"
    args = ["evaluate", "--runs", runs_dir(tmp_path, encrypted=True), "--data", cifar, "--out", out]
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
    assert_rejected(invoke("sweep", "--data", cifar, "--key", key_path, "--out", out), *fragments)
    assert not out.exists()


def test_evaluate_rejects_runs_without_training_table_before_ray(tmp_path, cifar):
    out = tmp_path / "out"
    assert_rejected(
        invoke("evaluate", "--runs", tmp_path / "none", "--data", cifar, "--out", out),
        "training.parquet",
        "pass as --runs",
    )
    assert not out.exists()


# ------------------------------------------------ the pre-flight key checks, library level
def test_key_pre_flight_checks(tmp_path, key_path):
    encrypted = [PAPER_SCENARIOS["Plain"], PAPER_SCENARIOS["Encrypted-DK"]]
    assert key_for_scenarios([PAPER_SCENARIOS["Plain"]], None, block_size=4) is None
    assert key_for_scenarios(encrypted, key_path, 4).fingerprint == load_key(key_path).fingerprint
    cases = [
        (lambda: key_for_scenarios(encrypted, None, 4), ("need a key", "pass --key FILE")),
        (
            lambda: key_for_scenarios(encrypted, bad_key("block-8", tmp_path), 4),
            ("made for block size 8", "--block-size 4"),
        ),
        (
            lambda: key_for_scenarios(encrypted, bad_key("permutation", tmp_path), 4),
            ("needs a master key", "lie-ray keygen"),
        ),
        (
            lambda: load_key_for_policies(bad_key("block-5", tmp_path), ["fixed"]),
            ("block size 5 does not divide the image size 32x32", "use one of 1, 2, 4, 8"),
        ),
        (
            lambda: load_key_for_policies(key_path, ["per-epoch"]),
            (
                "unknown key policy 'per-epoch'",
                "choose one of fixed, id-group, per-minibatch, per-image",
            ),
        ),
        (
            lambda: load_key_for_policies(key_path, ["per-minibatch"], key_batch_size=0),
            ("group size must be >= 1", "--key-batch-size"),
        ),
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
@pytest.mark.parametrize(
    "block_size, fragments",
    [
        (5, ("block size 5 does not divide the image size 32x32", "use one of 1, 2, 4, 8")),
        (3, ("block size 3 does not divide", "--block-size")),
        (0, ("must be a positive integer, got 0", "--block-size 2, 4 or 8")),
        (-4, ("must be a positive integer, got -4", "--block-size")),
        (4.0, ("must be a positive integer, got 4.0",)),
    ],
)
def test_check_block_size(block_size, fragments):
    with pytest.raises(LieRayError) as caught:
        check_block_size(block_size)
    assert_one_line(caught, *fragments)
    for good in (1, 2, 4, 8, 16, 32):
        check_block_size(good)


def block3_cipher():
    return from_permutation(np.random.default_rng(2).permutation(2 * 3 * 3 * 3), block_size=3)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.encrypt(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)),
        lambda c: c.decrypt(torch.rand(2, 3, 32, 32)),
        lambda c: cipher_with_grad(c, torch.rand(1, 3, 32, 32), "bpda-both"),
        lambda c: cipher_with_grad(c, torch.rand(1, 3, 32, 32), "none"),
    ],
    ids=["torch-uint8", "torch-float-decrypt", "bpda", "plain-autograd"],
)
def test_block_size_that_does_not_divide_the_image_on_every_torch_path(call):
    with pytest.raises(LieRayError) as caught:
        call(block3_cipher())
    assert_one_line(
        caught,
        "block size 3 does not divide the image size 32x32",
        "use a block size that divides both",
    )


@pytest.mark.parametrize(
    "bad", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"]
)
@pytest.mark.parametrize(
    "call",
    [
        lambda c, x: c.encrypt(x),
        lambda c, x: c.decrypt(x.double()),
        lambda c, x: c.encrypt(x.half()),
        lambda c, x: c.encrypt(x[1]),  # a single CHW image (the one holding the bad value)
        lambda c, x: cipher_with_grad(c, x, "bpda-both"),
        lambda c, x: cipher_with_grad(c, x, "bpda-high"),
        lambda c, x: cipher_with_grad(c, x, "none"),
    ],
    ids=[
        "encrypt",
        "decrypt-f64",
        "encrypt-f16",
        "encrypt-chw",
        "bpda-both",
        "bpda-high",
        "plain-autograd",
    ],
)
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


@pytest.mark.parametrize(
    "make, fragments",
    [
        (lambda: FGSM(classifier, eps=float("nan")), ("eps must lie in [0, 1]", "nan")),
        (lambda: PGD(classifier, eps=float("inf")), ("eps must lie in [0, 1]", "inf")),
        (lambda: PGD(classifier, step_size=float("nan")), ("step size must lie in (0, 1]",)),
        (lambda: PGD(classifier, steps=2.5), ("whole number of steps", "2.5")),
        (
            lambda: Scenario("S", encrypted=False, eps=float("nan")),
            ("scenario 'S': eps must lie in (0, 1]", "--pgd-eps"),
        ),
        (
            lambda: Scenario("S", encrypted=False, step_size="0.1"),
            ("step size must lie in (0, 1], got '0.1'", "--pgd-step-size"),
        ),
        (
            lambda: Scenario("S", encrypted=False, steps=True),
            ("steps must be an integer in 1..10000, got True", "--pgd-steps"),
        ),
    ],
    ids=[
        "fgsm-eps-nan",
        "pgd-eps-inf",
        "pgd-step-nan",
        "pgd-steps-float",
        "scenario-eps-nan",
        "scenario-step-text",
        "scenario-steps-bool",
    ],
)
def test_attack_settings_out_of_range_are_one_line_errors(make, fragments):
    with pytest.raises(LieRayError) as caught:
        make()
    assert_one_line(caught, *fragments)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604], ids=["world", "group", "others-only"])
def test_sweep_refuses_a_key_others_can_read(tmp_path, cifar, key_path, mode):
    os.chmod(key_path, mode)
    out = tmp_path / "out"
    assert_rejected(
        invoke("sweep", "--data", cifar, "--key", key_path, "--out", out),
        "readable by group or others",
        f"chmod 600 {key_path}",
    )
    assert not out.exists()


# ------------------------------------------- issue 15: output locations, before Ray starts
def tree(root: Path) -> set[str]:
    """Every path under ``root``: compared before and after, 'nothing left behind'."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def encrypt_args(cifar: Path, key_path: Path) -> list:
    return ["encrypt", "--data", cifar, "--key", key_path]


OUTPUT_PROBLEMS = {  # how -> (the location to pass, given tmp_path; error fragments)
    "a-file": (
        lambda t: t / "blocker",
        ("blocker is a file, not a directory", "pass a directory path instead"),
    ),
    "under-a-file": (
        lambda t: t / "blocker" / "sub",
        ("sub cannot be created", "blocker is a file, not a directory"),
    ),
    "broken-link": (
        lambda t: t / "link",
        ("link is a broken symbolic link", "pass a directory path instead"),
    ),
    "under-a-broken-link": (
        lambda t: t / "link" / "sub",
        ("sub cannot be created", "link is a broken symbolic link"),
    ),
}


def make_blockers(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")


@pytest.mark.parametrize("how", sorted(OUTPUT_PROBLEMS))
@pytest.mark.parametrize("command", ["train", "evaluate", "sweep", "encrypt"])
def test_every_command_rejects_an_unusable_out_before_ray(tmp_path, cifar, key_path, command, how):
    make_blockers(tmp_path)
    location, fragments = OUTPUT_PROBLEMS[how]
    args = {
        "train": ["train", "--data", cifar, "--scenarios", "Plain"],
        "evaluate": ["evaluate", "--runs", runs_dir(tmp_path), "--data", cifar],
        "sweep": ["sweep", "--data", cifar, "--scenarios", "Plain"],
        "encrypt": encrypt_args(cifar, key_path),
    }[command]
    before = tree(tmp_path)
    assert_rejected(invoke(*args, "--out", location(tmp_path)), "--out", *fragments)
    assert tree(tmp_path) == before and (tmp_path / "blocker").read_text() == "x"


@pytest.mark.parametrize("how", ["a-file", "under-a-file"])
def test_sweep_rejects_an_unusable_local_storage_before_ray(tmp_path, cifar, how):
    make_blockers(tmp_path)
    location, fragments = OUTPUT_PROBLEMS[how]
    before = tree(tmp_path)
    assert_rejected(
        invoke(
            "sweep",
            "--data",
            cifar,
            "--out",
            tmp_path / "out",
            "--storage",
            f"file://{location(tmp_path)}",
        ),
        "--storage",
        *fragments,
    )
    assert tree(tmp_path) == before


@pytest.mark.parametrize(
    "where, fragments",
    [
        ("dir", ("--preview", "is a directory", "pass a file path, e.g. --preview")),
        ("under-a-file", ("--preview", "cannot be created", "blocker is a file, not a directory")),
    ],
)
def test_encrypt_rejects_an_unusable_preview_before_ray(
    tmp_path, cifar, key_path, where, fragments
):
    make_blockers(tmp_path)
    preview = tmp_path if where == "dir" else tmp_path / "blocker" / "p.png"
    before = tree(tmp_path)
    assert_rejected(
        invoke(*encrypt_args(cifar, key_path), "--out", tmp_path / "out", "--preview", preview),
        *fragments,
    )
    assert tree(tmp_path) == before


@pytest.fixture
def read_only(monkeypatch):
    """Deny write access to the given directories as a non-root user sees it (root writes
    anywhere, so chmod alone cannot show this under root)."""
    denied = set()
    real_access = os.access

    def access(path, mode, *args, **kwargs):
        if mode & os.W_OK and Path(path).resolve() in denied:
            return False
        return real_access(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)
    return lambda path: denied.add(Path(path).resolve())


@pytest.mark.parametrize("exists", [True, False], ids=["out-itself", "its-parent"])
def test_a_non_writable_out_is_rejected_before_ray(tmp_path, cifar, read_only, exists):
    locked = tmp_path / "locked"
    locked.mkdir()
    read_only(locked)
    out = locked if exists else locked / "out"
    before = tree(tmp_path)
    message = assert_rejected(
        invoke("sweep", "--data", cifar, "--out", out),
        "not writable by this user",
        f"chmod u+w {locked}",
        "choose another --out path",
    )
    assert ("cannot be created" in message) != exists
    assert tree(tmp_path) == before


def test_report_rejects_a_non_writable_results_directory(tmp_path, read_only):
    read_only(tmp_path)
    assert_rejected(invoke("report", "--results", tmp_path), "--results", "not writable")
    assert tree(tmp_path) == set()


def test_keygen_rejects_an_out_under_a_broken_link(tmp_path):
    make_blockers(tmp_path)
    before = tree(tmp_path)
    assert_rejected(
        invoke("keygen", "--out", tmp_path / "link" / "k.json"),
        "cannot be created",
        "link is a broken symbolic link",
    )
    assert tree(tmp_path) == before


# ------------------------------------------- issue 15: duplicates and empty lists, CLI level
DUPLICATES = {
    "train-scenarios": (
        ["train", "--scenarios", "Plain,Plain"],
        ("--scenarios names 'Plain' more than once", "list each scenario once"),
    ),
    "sweep-scenarios": (
        ["sweep", "--scenarios", "Plain, Encrypted,Plain"],
        ("'Plain' more than once",),
    ),
    "evaluate-scenarios": (
        ["evaluate", "--runs", "RUNS", "--scenarios", "Plain,Plain"],
        ("'Plain' more than once",),
    ),
    "train-empty-scenarios": (
        ["train", "--scenarios", ""],
        ("--scenarios '' names no scenario", "leave it out"),
    ),
    "evaluate-empty-scenarios": (
        ["evaluate", "--runs", "RUNS", "--scenarios", " , "],
        ("names no scenario",),
    ),
    "evaluate-epsilons": (
        ["evaluate", "--runs", "RUNS", "--epsilons", "0.1,0,0.1"],
        ("--epsilons lists 0.1 more than once", "list each epsilon once"),
    ),
    "sweep-epsilons-spelled-twice": (
        ["sweep", "--epsilons", "0,0.1,0.10"],
        ("lists 0.1 more than once",),
    ),
    "evaluate-empty-epsilons": (
        ["evaluate", "--runs", "RUNS", "--epsilons", ","],
        ("--epsilons names no value", "leave it out"),
    ),
    "evaluate-epsilon-inf": (
        ["evaluate", "--runs", "RUNS", "--epsilons", "0,inf"],
        ("epsilons must lie in [0, 1]", "inf", "pass --epsilons"),
    ),
    "sweep-epsilon-nan": (["sweep", "--epsilons", "0,nan"], ("epsilons must lie in [0, 1]", "nan")),
}


@pytest.mark.parametrize("case", sorted(DUPLICATES))
def test_duplicate_and_empty_lists_are_rejected_before_ray(tmp_path, case):
    args, fragments = DUPLICATES[case]
    out = tmp_path / "out"
    args = [runs_dir(tmp_path) if a == "RUNS" else a for a in args]
    assert_rejected(invoke(*args, "--out", out), *fragments)
    assert not out.exists()


SCENARIO = "[[scenario]]\nname = '{}'\nencrypted = false\n"


@pytest.mark.parametrize(
    "files, fragments",
    [
        ([SCENARIO.format("X") * 2], ("defines 'X' twice", "give each [[scenario]] its own name")),
        (
            [SCENARIO.format("Plain")],
            ("defines 'Plain', already a built-in scenario", "give it another name"),
        ),
        (
            [SCENARIO.format("X"), SCENARIO.format("X")],
            ("1.toml defines 'X', already defined in", "0.toml"),
        ),
        (
            [SCENARIO.format("A,B")],
            ("scenario name 'A,B' must be a non-empty string without commas", "rename"),
        ),
        (["[[scenario]]\nname = 3\nencrypted = false\n"], ("scenario name 3 must be",)),
        (
            ["[[scenario]]\nname = 'X'\nencrypted = 'yes'\n"],
            ("encrypted must be true or false", "'yes'"),
        ),
        (
            ["[[scenario]]\nname = 'X'\nencrypted = false\nadversarial = 1\n"],
            ("adversarial must be true or false",),
        ),
    ],
    ids=[
        "twice-in-a-file",
        "a-built-in-name",
        "across-files",
        "comma",
        "number-name",
        "text-flag",
        "number-flag",
    ],
)
def test_scenario_files_defining_a_name_twice_or_badly_are_rejected(tmp_path, files, fragments):
    out, args = tmp_path / "out", []
    for number, text in enumerate(files):
        (tmp_path / f"{number}.toml").write_text(text)
        args += ["--scenario-file", tmp_path / f"{number}.toml"]
    assert_rejected(invoke("train", "--out", out, *args), *fragments)
    assert not out.exists()


def test_two_scenario_files_add_their_scenarios(tmp_path):
    from lie_ray.scenarios import select_scenarios

    for name in ("A", "B"):
        (tmp_path / f"{name}.toml").write_text(SCENARIO.format(name))
    chosen = select_scenarios("B,Plain,A", [tmp_path / "A.toml", tmp_path / "B.toml"])
    assert [s.name for s in chosen] == ["B", "Plain", "A"]


# ----------------------------------------------- issue 15: keys, data and runs that mislead
@pytest.mark.parametrize("command", ["key-info", "train", "sweep", "encrypt", "evaluate"])
def test_a_key_path_that_is_a_directory_says_so(tmp_path, cifar, command):
    keys = tmp_path / "keys"
    keys.mkdir()
    out = tmp_path / "out"
    args = {
        "key-info": ["key-info", keys],
        "train": [
            "train",
            "--data",
            cifar,
            "--scenarios",
            "Encrypted",
            "--key",
            keys,
            "--out",
            out,
        ],
        "sweep": ["sweep", "--data", cifar, "--key", keys, "--out", out],
        "encrypt": ["encrypt", "--data", cifar, "--key", keys, "--out", out],
        "evaluate": [
            "evaluate",
            "--runs",
            runs_dir(tmp_path, encrypted=True),
            "--data",
            cifar,
            "--key",
            keys,
            "--out",
            out,
        ],
    }[command]
    message = assert_rejected(
        invoke(*args), f"key file {keys} is a directory", f"--key {keys / 'master.json'}"
    )
    assert "not found" not in message and "keygen" not in message
    assert not out.exists()


def test_a_key_path_that_is_a_device_says_so(tmp_path):
    assert_rejected(
        invoke("key-info", os.devnull),
        f"key file {os.devnull} is not a regular file",
        "lie-ray keygen",
    )


def test_data_that_is_a_file_is_one_line(tmp_path):
    data = tmp_path / "cifar.tar.gz"
    data.write_bytes(b"\x1f\x8b")
    assert_rejected(
        invoke("train", "--data", data, "--out", tmp_path / "out"),
        f"no CIFAR-10 data at {data}",
        "pass --data DIR",
    )
    assert tree(tmp_path) == {"cifar.tar.gz"}


@pytest.mark.parametrize(
    "content, fragments",
    [
        (b"junk", ("cannot read", "training.parquet", "rerun the step that wrote it")),
        (None, ("lacks columns ['encrypted', 'key_policy', 'checkpoint', 'run_id', 'record']",)),
    ],
    ids=["corrupt", "another-table"],
)
def test_evaluate_rejects_a_damaged_training_table_before_ray(tmp_path, cifar, content, fragments):
    runs = tmp_path / "runs"
    runs.mkdir()
    if content is None:  # a results table renamed: readable, but not what training wrote
        pq.write_table(pa.table({"scenario": ["Plain"], "error": [0.5]}), runs / "training.parquet")
    else:
        (runs / "training.parquet").write_bytes(content)
    out = tmp_path / "out"
    assert_rejected(invoke("evaluate", "--runs", runs, "--data", cifar, "--out", out), *fragments)
    assert not out.exists()


# ------------------------------- issue 15: click's own usage errors, through the real entry
USAGE_ERRORS = {
    "epochs-zero": (
        ["train", "--epochs", "0"],
        (
            "Invalid value for '--epochs'",
            "greater than or equal to 1",
            "see 'lie-ray train --help'",
        ),
    ),
    "width-text": (["train", "--width", "wide"], ("Invalid value for '--width'", "valid integer")),
    "eval-limit-zero": (
        ["evaluate", "--runs", ".", "--eval-limit", "0"],
        ("Invalid value for '--eval-limit'", "lie-ray evaluate --help"),
    ),
    "typo": (["sweep", "--epoch", "2"], ("No such option: --epoch", "--epochs")),
    "missing-option": (["evaluate"], ("Missing option '--runs'",)),
    "missing-argument": (["key-info"], ("Missing argument 'key'",)),
    "no-value": (["keygen", "--out"], ("Option '--out' requires an argument",)),
    "unknown-command": (["trian"], ("No such command 'trian'", "see 'lie-ray --help'")),
}


def run_entry(capsys, entry, argv) -> SimpleNamespace:
    """Run a console entry point as the shell does; its exit status and what it printed."""
    with pytest.raises(SystemExit) as exit_:
        entry(argv)
    captured = capsys.readouterr()
    return SimpleNamespace(
        exit_code=exit_.value.code,
        stdout=captured.out,
        stderr=captured.err,
        output=captured.out + captured.err,
        exception=None,
    )


@pytest.mark.parametrize("case", sorted(USAGE_ERRORS))
def test_usage_errors_are_one_line_through_the_lie_ray_entry_point(
    tmp_path, capsys, monkeypatch, case
):
    monkeypatch.chdir(tmp_path)
    args, fragments = USAGE_ERRORS[case]
    assert_rejected(run_entry(capsys, lie_ray.app.cli.main, args), *fragments)
    assert tree(tmp_path) == set()


def test_usage_errors_are_one_line_through_python_m_lie_ray_sweep(tmp_path, capsys, monkeypatch):
    import lie_ray.sweep

    monkeypatch.chdir(tmp_path)

    def sweep_main(argv):
        monkeypatch.setattr(sys, "argv", ["lie_ray.sweep", *argv])
        lie_ray.sweep.main()

    assert_rejected(
        run_entry(capsys, sweep_main, ["--width", "0"]),
        "Invalid value for '--width'",
        "see 'python -m lie_ray.sweep --help'",
    )
    assert tree(tmp_path) == set()


# ------------------------------------------------------------- issue 20: bad input, round three
@pytest.mark.parametrize("option", ["--out", "--preview"])
def test_an_output_whose_parent_cannot_be_made_is_one_line_before_ray(
    tmp_path, cifar, key_path, option
):
    """/proc exists and passes os.access for root, yet nothing can be made in it: mkdir says
    FileNotFoundError, which no permission check foresees."""
    where = {
        "--out": ["--out", "/proc/nope/o", "--preview", tmp_path / "p.png"],
        "--preview": ["--out", tmp_path / "o", "--preview", "/proc/nope/p.png"],
    }[option]
    assert_rejected(
        invoke("encrypt", "--data", cifar, "--key", key_path, *where),
        f"{option} /proc/nope",
        "cannot be written",
        "/proc",
        f"choose another {option} path",
    )
    assert not (tmp_path / "o").exists() and not Path("/proc/nope").exists()


def test_key_arrays_of_any_type_mean_the_same_key_or_are_refused():
    import pyffx

    from lie_ray import transforms

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    flip = rng.permutation(48) > 24
    as_str = transforms.from_arrays("ffx", {"flip": flip, "password": "password"}, 4)
    as_bytes = transforms.from_arrays("ffx", {"flip": flip.tolist(), "password": b"password"}, 4)
    oracle = [pyffx.Integer(b"password", length=3).encrypt(v) for v in range(256)]
    assert as_bytes.key_arrays()["lookup"].tolist() == oracle  # pyffx's own bytes key
    assert np.array_equal(as_str.encrypt(images), as_bytes.encrypt(images))
    perm = rng.permutation(48)
    expected = transforms.from_arrays("shuffle", {"perm": perm}, 4).encrypt(images)
    for given in (
        perm.tolist(),
        perm.astype(np.int16),
        perm.astype(np.uint8),
        perm.astype(np.float32),
    ):
        assert np.array_equal(
            transforms.from_arrays("shuffle", {"perm": given}, 4).encrypt(images), expected
        ), type(given)
    refused = [
        ("shuffle", {"perm": perm + 0.5}, "'perm' must hold integers"),
        ("shuffle", {"perm": ",".join(map(str, perm))}, "'perm' must hold integers"),
        ("shuffle", {"perm": [None] * 48}, "'perm' must hold integers"),
        ("ffx", {"flip": flip, "password": 1234}, "'password' must be a str or bytes"),
        (
            "ffx",
            {"flip": flip, "password": np.frombuffer(b"pw", np.uint8)},
            "'password' must be a str or bytes",
        ),
    ]
    for name, arrays, fragment in refused:
        with pytest.raises(LieRayError, match=fragment) as caught:
            transforms.from_arrays(name, arrays, 4)
        assert_one_line(caught)
