"""The lie-ray command line: keygen, key-info, encrypt, and its one-line errors."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lie_ray import transforms
from lie_ray.app.cli import app
from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import read_shards, sorted_by_id
from lie_ray.keys import load_key

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_one_line_error(result, *fragments: str):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture
def key_path(tmp_path):
    path = tmp_path / "keys" / "master.json"
    result = invoke("keygen", "--out", path)
    assert result.exit_code == 0, result.output
    return path


def test_keygen_writes_a_private_key_and_prints_its_fingerprint(key_path):
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = load_key(key_path)
    info = invoke("key-info", key_path)
    assert info.exit_code == 0 and key.fingerprint in info.output
    secret = json.loads(key_path.read_text())["secret"]
    assert secret not in info.output
    assert_one_line_error(invoke("keygen", "--out", key_path), "already exists", "--force")


@pytest.mark.parametrize("policy", ["fixed", "id-group"])
def test_encrypt_writes_shards_that_decrypt_to_the_originals(
    ray_cluster, cifar_dir, tmp_path, key_path, policy
):
    out, preview = tmp_path / "encrypted", tmp_path / "preview.png"
    result = invoke(
        "encrypt",
        "--data",
        cifar_dir,
        "--key",
        key_path,
        "--policy",
        policy,
        "--out",
        out,
        "--preview",
        preview,
    )
    assert result.exit_code == 0, result.output
    key = load_key(key_path)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["master_fingerprint"] == key.fingerprint
    assert manifest["rows"] == {"train": 5438, "test": 1017}
    for split_name in ("train", "test"):
        split = load_split(cifar_dir, split_name)
        rows = sorted_by_id(read_shards(out / split_name).take_batch(10_000, batch_format="numpy"))
        np.testing.assert_array_equal(rows["id"], split.ids)
        np.testing.assert_array_equal(rows["label"], split.labels)
        assert not np.array_equal(rows["image"], split.images)
        decrypted = np.empty_like(rows["image"])
        for label in np.unique(rows["key_label"]):
            mine = rows["key_label"] == label
            cipher = transforms.build("le", key, label=str(label))
            decrypted[mine] = cipher.decrypt(rows["image"][mine])
            assert set(rows["key_fingerprint"][mine]) == {cipher.fingerprint}
        np.testing.assert_array_equal(decrypted, split.images)
        assert set(rows["master_fingerprint"]) == {key.fingerprint}
        expected_keys = 1 if policy == "fixed" else -(-len(split.ids) // 128)
        assert len(np.unique(rows["key_label"])) == expected_keys
    with Image.open(preview) as png:
        assert png.size[0] > png.size[1] > 0


def test_missing_data_directory_fails_cleanly(tmp_path, key_path):
    out = tmp_path / "out"
    result = invoke("encrypt", "--data", tmp_path / "nowhere", "--key", key_path, "--out", out)
    assert_one_line_error(result, "no CIFAR-10 data at", "--data")
    assert not out.exists()


def test_unknown_policy_and_exposed_key_fail_cleanly(tmp_path, key_path, cifar_dir):
    out = tmp_path / "out"
    assert_one_line_error(
        invoke(
            "encrypt", "--data", cifar_dir, "--key", key_path, "--policy", "per-epoch", "--out", out
        ),
        "unknown key policy",
    )
    os.chmod(key_path, 0o644)
    assert_one_line_error(
        invoke("encrypt", "--data", cifar_dir, "--key", key_path, "--out", out),
        "readable by group or others",
        "chmod 600",
    )
    assert not out.exists()


def test_console_script_help_and_error_exit_code(tmp_path):
    # The installed entry point, as a user runs it: help works, a bad key file exits 2.
    help_text = subprocess.run(
        [sys.executable, "-m", "lie_ray", "encrypt", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "--policy" in help_text and "--preview" in help_text
    missing = subprocess.run(
        [sys.executable, "-m", "lie_ray", "key-info", tmp_path / "none.json"],
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2
    assert (
        missing.stderr.strip().startswith("error: key file") and "Traceback" not in missing.stderr
    )
