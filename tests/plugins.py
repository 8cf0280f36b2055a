"""Plug-ins installed as users install them (pip, from the example's own pyproject.toml, into a
directory on PYTHONPATH), and the one sweep of a plug-in transform that the plug-in tests and
the board's tests both read: a run costs minutes, and one run serves both."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import EVAL_SLICE, REPO_ROOT, TRAIN_SLICE, cli_args

XOR_EXAMPLE = REPO_ROOT / "examples" / "xor_transform"
ATTACK_EXAMPLE = REPO_ROOT / "examples" / "wrong_key_attack"
XOR_SCENARIO = """[[scenario]]
name = "XOR"
encrypted = true
key_policy = "fixed"
transform = "xor"
"""


def installed(example: Path, tmp_path_factory) -> dict[str, str]:
    """An example plug-in installed by pip from a copy of its folder (the source stays clean)
    into a directory of its own, and the user's environment in which Python finds it there
    (no RAY_ADDRESS: commands start their own embedded Ray)."""
    work = tmp_path_factory.mktemp(example.name)
    shutil.copytree(example, work / "source")
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


def board_sweep_of_xor(env: dict[str, str], cifar_dir: Path, work: Path) -> Path:
    """``lie-ray sweep --preset board`` of Plain and a scenario file's XOR (the plug-in's
    transform) on the test slice, every attack on every image (so each attack's row is there
    to check), the privacy phase on xor alone; returns its --out."""
    (work / "xor.toml").write_text(XOR_SCENARIO)
    out = work / "out"
    command = [sys.executable, "-m", "lie_ray", "sweep", "--preset", "board"]
    command += ["--scenario-file", str(work / "xor.toml"), "--scenarios", "Plain,XOR"]
    command += ["--data", str(cifar_dir), "--out", str(out), "--privacy-transforms", "xor"]
    command += cli_args(TRAIN_SLICE) + cli_args(EVAL_SLICE)
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1200, cwd=REPO_ROOT, env=env
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    return out
