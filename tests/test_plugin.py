"""A transform written outside lie_ray (``examples/xor_transform``), installed as users install
a plug-in (pip, from its own pyproject.toml, into a directory on PYTHONPATH), goes where a
built-in transform goes: a scenario file, training, every attack, the privacy attacks, the
report; commands run as subprocesses on the embedded Ray they start, whose workers find it
through its entry point as the driver does."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT

LIE_RAY = os.path.join(os.path.dirname(sys.executable), "lie-ray")
EXAMPLE = REPO_ROOT / "examples" / "xor_transform"
SCENARIO = """[[scenario]]
name = "XOR"
encrypted = true
key_policy = "fixed"
transform = "xor"
"""
TRAIN = [
    "--preset",
    "smoke",
    "--epochs",
    "1",
    "--train-limit",
    "256",
    "--test-limit",
    "64",
    "--width",
    "4",
]
EVALUATE = [
    "--preset",
    "smoke",
    "--eval-limit",
    "32",
    "--epsilons",
    "0,0.1",
    "--eval-pgd-steps",
    "2",
    "--eot-keys",
    "1",
    "--square-queries",
    "4",
    "--pba-steps",
    "8",
    "--attacker-images",
    "32",
    "--actors",
    "1",
]


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    """The example installed by pip from a copy of its folder (the source stays clean)."""
    work = tmp_path_factory.mktemp("plugin")
    shutil.copytree(EXAMPLE, work / "source")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(work / "site"),
            str(work / "source"),
        ],
        check=True,
        timeout=600,
    )
    path = os.pathsep.join(filter(None, [str(work / "site"), os.environ.get("PYTHONPATH")]))
    return {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONPATH": path}


def lie_ray(env, *args, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [LIE_RAY, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
    )
    assert done.returncode == expect, (done.stdout + done.stderr)[-4000:]
    return done


def test_outside_transform_trains_is_attacked_and_its_key_recovered(
    plugin_env, tmp_path, cifar_dir
):
    (tmp_path / "xor.toml").write_text(SCENARIO)
    key = tmp_path / "key.json"
    lie_ray(plugin_env, "keygen", "--out", key)
    lie_ray(
        plugin_env,
        "train",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--scenario-file",
        tmp_path / "xor.toml",
        "--scenarios",
        "Plain,XOR",
        "--out",
        tmp_path / "runs",
        *TRAIN,
    )
    training = {
        r["scenario"]: r for r in pq.read_table(tmp_path / "runs" / "training.parquet").to_pylist()
    }
    assert training["XOR"]["transform"] == "xor" and training["XOR"]["encrypted"]
    assert training["XOR"]["key_fingerprint"]

    lie_ray(
        plugin_env,
        "evaluate",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--runs",
        tmp_path / "runs",
        "--out",
        tmp_path / "eval",
        *EVALUATE,
    )
    results = pq.read_table(tmp_path / "eval" / "results.parquet").to_pandas()
    xor = results[(results.scenario == "XOR") & (results.epsilon == 0.1)].set_index("evaluation")
    # Every attack a built-in transform with BPDA gets, the recovered-key ones included (one
    # leaked pair gives XOR's key away: plain XOR cipher).
    for name in (
        "pgd",
        "bpda",
        "eot",
        "transfer",
        "pba",
        "autoattack",
        "recovered-key-1",
        "worst-case-keyless",
        "worst-case",
    ):
        assert name in xor.index, name
    assert (results["transform"][results.scenario == "XOR"] == "xor").all()
    assert "XOR" in (tmp_path / "eval" / "report.md").read_text()

    lie_ray(
        plugin_env,
        "privacy",
        "--preset",
        "smoke",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--out",
        tmp_path / "privacy",
        "--transforms",
        "xor",
    )
    rows = {
        r["attack"]: r for r in pq.read_table(tmp_path / "privacy" / "privacy.parquet").to_pylist()
    }
    assert rows["known-plaintext"]["key_recovered"] is True
    assert rows["known-plaintext"]["ssim"] == pytest.approx(1.0)
    assert rows["key-space"]["transform"] == "xor"


def test_without_the_plugin_the_name_is_refused_in_one_line(tmp_path):
    (tmp_path / "xor.toml").write_text(SCENARIO)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    done = lie_ray(
        env, "train", "--scenario-file", tmp_path / "xor.toml", "--out", tmp_path / "runs", expect=2
    )
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "unknown transform 'xor'" in message[0]
    assert "lie_ray.transforms" in message[0]  # where a plug-in declares it
    assert not (tmp_path / "runs").exists()


def test_the_example_transform_is_exact_and_invertible():
    """The example's own test: encryption is the XOR with its mask in every block (computed
    here block by block, independently), decryption inverts it, and the float path matches."""
    import torch

    sys.path.insert(0, str(EXAMPLE))
    try:
        from lie_ray_xor import BlockXor
    finally:
        sys.path.remove(str(EXAMPLE))
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 256, 4 * 4 * 3).astype(np.uint8)
    xor = BlockXor({"mask": mask}, block_size=4)
    images = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    expected = images.copy()
    for top in range(0, 32, 4):
        for left in range(0, 32, 4):
            expected[:, top : top + 4, left : left + 4] ^= mask.reshape(4, 4, 3)
    assert np.array_equal(xor.encrypt(images), expected)
    assert np.array_equal(xor.decrypt(xor.encrypt(images)), images)
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(
        torch.round(xor.encrypt(floats) * 255).to(torch.uint8).permute(0, 2, 3, 1),
        torch.from_numpy(expected),
    )
