"""Every command, and every README example, run the way a user runs it: the installed
``lie-ray`` script as a subprocess, on an embedded Ray it starts and stops itself, on a small
slice of the real CIFAR-10 subset; then what it printed and wrote is checked. One chain, as a
user would go: keygen, key-info, encrypt, train, evaluate, verify, report, privacy. (``sweep`` runs
end to end in ``test_signals.py``, interrupted and resumed, and under ``ray job submit`` in
``test_sweep.py``.)"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import doc_blocks
import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT, light_eval
from PIL import Image

from lie_ray.data.cifar import load_split
from lie_ray.infra.provenance import record_of
from lie_ray.keys import generate_key, load_key, save_key

LIE_RAY = str(Path(sys.executable).with_name("lie-ray"))  # the console script pip installed
COMMANDS = (
    "keygen",
    "key-info",
    "encrypt",
    "train",
    "evaluate",
    "verify",
    "sweep",
    "privacy",
    "report",
)
# The user's environment: no RAY_ADDRESS, so every command starts its own embedded Ray.
USER_ENV = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
TRAIN = [
    "--preset",
    "smoke",
    "--scenarios",
    "Plain,Encrypted-DK",
    "--epochs",
    "1",
    "--train-limit",
    "128",
    "--test-limit",
    "64",
    "--width",
    "4",
    "--key-batch-size",
    "32",
]
EVALUATE = ["--preset", "smoke", *light_eval(64, "0,0.1")]


def run(*args, cwd: Path = REPO_ROOT, timeout: int = 900) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [LIE_RAY, *map(str, args)],
        cwd=cwd,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return done


@pytest.fixture(scope="module")
def chain(tmp_path_factory, cifar_dir):
    """The commands one after another, each reading what the one before wrote."""
    home = tmp_path_factory.mktemp("user")
    key = home / "keys" / "master.json"
    printed = {
        "keygen": run("keygen", "--out", key).stdout,
        "key-info": run("key-info", key).stdout,
    }
    printed["encrypt"] = run(
        "encrypt",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--policy",
        "id-group",
        "--key-batch-size",
        "32",
        "--limit",
        "64",
        "--actors",
        "1",
        "--out",
        home / "enc",
        "--preview",
        home / "enc" / "preview.png",
    ).stdout
    printed["train"] = run(
        "train", "--data", cifar_dir, "--key", key, "--out", home / "train", *TRAIN
    ).stdout
    printed["evaluate"] = run(
        "evaluate",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--runs",
        home / "train",
        "--out",
        home / "eval",
        *EVALUATE,
    ).stdout
    printed["verify"] = run(
        "verify", home / "eval", "--key", key, "--robustbench", home / "robustbench"
    ).stdout
    (home / "eval" / "report.md").unlink()
    printed["report"] = run("report", "--results", home / "eval").stdout
    printed["privacy"] = run(
        "privacy",
        "--preset",
        "smoke",
        "--data",
        cifar_dir,
        "--key",
        key,
        "--out",
        home / "privacy",
        "--transforms",
        "le,shuffle",
    ).stdout
    return {"home": home, "key": key, "printed": printed}


def test_help_of_the_app_and_of_every_command():
    top = run("--help").stdout
    for command in COMMANDS:
        assert re.search(rf"^\W*{command}\s", top, re.M), top
        text = run(command, "--help").stdout
        assert text.split()[:3] == ["Usage:", "lie-ray", command] and "--help" in text
    sweep = subprocess.run(
        [sys.executable, "-m", "lie_ray.sweep", "--help"],
        cwd=REPO_ROOT,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sweep.returncode == 0 and sweep.stdout.split()[:4] == [
        "Usage:",
        "python",
        "-m",
        "lie_ray.sweep",
    ]


def test_keygen_and_key_info(chain):
    key = load_key(chain["key"])
    assert chain["key"].stat().st_mode & 0o777 == 0o600
    assert chain["printed"]["keygen"] == (
        f"wrote {chain['key']} (block size 4, fingerprint {key.fingerprint})\n"
    )
    assert chain["printed"]["key-info"] == (
        f"{chain['key']}: master key, block size 4, fingerprint {key.fingerprint}\n"
    )


def test_encrypt(chain):
    enc = chain["home"] / "enc"
    manifest = json.loads((enc / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 64, "test": 64}
    assert manifest["key_batch_size"] == 32 and manifest["policy"] == "id-group"
    assert "wrote 64 train and 64 test images" in chain["printed"]["encrypt"]
    with Image.open(enc / "preview.png") as preview:
        assert preview.size[0] > 50


def test_train_writes_the_run_record_everywhere(chain, cifar_dir):
    train = chain["home"] / "train"
    table = pq.read_table(train / "training.parquet")
    rows = {row["scenario"]: row for row in table.to_pylist()}
    assert set(rows) == {"Plain", "Encrypted-DK"}
    record = json.loads(rows["Encrypted-DK"]["record"])
    assert record["scenario"]["key_policy"] == "per-minibatch"
    assert record["scenario"]["key_batch_size"] == 32  # the user's, not the default 128
    assert record["scenario"]["transform"] == {"name": "le", "block_size": 4, "variant": "paper"}
    assert record["key_fingerprint"] == load_key(chain["key"]).fingerprint
    assert record["settings"]["train_limit"] == 128 and record["settings"]["width"] == 4
    assert set(record["data"]["files"]) >= {"test_batch", "data_batch_1"}
    assert record["code"]["versions"]["torch"] and record["device"] == "cpu"
    # The checkpoint carries the same record, under the run name it defines.
    checkpoint = Path(rows["Encrypted-DK"]["checkpoint"])
    assert checkpoint.parent.name == f"Encrypted-DK-{record['run_id'][:12]}"
    meta = json.loads((checkpoint / "meta.json").read_text())
    assert meta["record"]["run_id"] == record["run_id"] == rows["Encrypted-DK"]["run_id"]
    assert record_of(table.schema)["data"]["directory"] == str(cifar_dir.resolve())
    assert re.search(r"^Encrypted-DK\s+[\d.]+\s+[\d.]+\s+1\s", chain["printed"]["train"], re.M)


def test_evaluate_rebuilds_the_defender_from_the_record(chain):
    home = chain["home"]
    results = pq.read_table(home / "eval" / "results.parquet")
    record = record_of(results.schema)
    assert record["training"]["Encrypted-DK"]["scenario"]["key_batch_size"] == 32
    # The evaluation's clean test error is training's own on the same 64 images: only the
    # same test keys (a group of 32 ids each, not 128) give the same encrypted images.
    trained = {
        r["scenario"]: r for r in pq.read_table(home / "train" / "training.parquet").to_pylist()
    }
    clean = {r["scenario"]: r for r in results.to_pylist() if r["evaluation"] == "test"}
    for name in ("Plain", "Encrypted-DK"):
        assert clean[name]["n"] == 64 and trained[name]["test_images"] == 64
        assert clean[name]["error"] == pytest.approx(trained[name]["test_error"], abs=1e-9)
        assert clean[name]["run_id"] == trained[name]["run_id"]
    examples = pq.read_table(home / "eval" / "examples.parquet")
    assert record_of(examples.schema) == record
    printed = chain["printed"]["evaluate"]
    assert "wrote" in printed and "Encrypted-DK" in printed


def test_verify_recomputes_every_worst_case_of_the_evaluation(chain):
    """The evaluation's checkpoints lie outside its --out (recorded by absolute path), and
    Encrypted-DK's key changes every 32 ids: each worst case is counted again from the saved
    images through the pipeline those ids key; no model of images alone exists for it, so only
    Plain's sets are exported for RobustBench."""
    results = pq.read_table(chain["home"] / "eval" / "results.parquet").to_pylist()
    worst = [r for r in results if r["evaluation"].startswith("worst-case")]
    assert {r["scenario"] for r in worst} == {"Plain", "Encrypted-DK"}
    assert chain["printed"]["verify"].splitlines()[0] == (
        f"verified {len(worst)} worst-case figures of 2 scenarios in {chain['home'] / 'eval'}: "
        "every one agrees with results.parquet"
    )
    # Its RobustBench sets: Plain's alone, Encrypted-DK's key changing with the image's id
    exported = sorted(p.name for p in (chain["home"] / "robustbench").iterdir())
    assert exported == ["Plain"]


def test_report_rerenders_with_one_provenance_section(chain):
    report = (chain["home"] / "eval" / "report.md").read_text()
    assert chain["printed"]["report"] == f"wrote {chain['home'] / 'eval' / 'report.md'}\n"
    assert report.count("## Provenance") == 1
    code = record_of(pq.read_schema(chain["home"] / "eval" / "results.parquet"))["code"]
    if code["commit"]:
        assert f"commit {code['commit'][:12]}" in report
    assert f"torch {code['versions']['torch']}" in report
    assert "| Encrypted-DK |" in report


def test_privacy(chain):
    out = chain["home"] / "privacy"
    table = pq.read_table(out / "privacy.parquet")
    assert set(table.column("transform").to_pylist()) == {"le", "shuffle"}
    record = record_of(table.schema)
    assert record["key_fingerprint"] == load_key(chain["key"]).fingerprint
    assert record["transforms"] == ["le", "shuffle"]
    text = (out / "privacy.md").read_text()
    assert text.startswith("# Privacy attacks") and text.count("## Provenance") == 1
    with Image.open(out / "privacy_gallery.png") as gallery:
        assert gallery.size[0] > 50
    assert re.search(r"^le\s+known-plaintext\s", chain["printed"]["privacy"], re.M)


def user_key(directory: Path) -> Path:
    """keys/master.json under ``directory``, as 'lie-ray keygen' writes it (mode 0600)."""
    return save_key(generate_key(), directory / "keys" / "master.json")


def test_doc_python_examples_run_as_written(cifar_dir, tmp_path, smoke_sweep):
    """Each ```python block of the README and docs/ marked as run here, verbatim, in a fresh
    interpreter whose working directory holds keys/master.json, with the names the block
    leaves to the reader bound to real CIFAR images (``y`` their labels, ``x_own`` other
    images) and ``run_dir`` to a sweep's output."""
    user_key(tmp_path)
    prelude = (
        "import numpy as np, torch\n"
        "from lie_ray.data.cifar import load_split\n"
        f"images_uint8_nhwc = load_split({str(cifar_dir)!r}, 'test', limit=8).images\n"
        f"y = load_split({str(cifar_dir)!r}, 'test', limit=8).labels\n"
        f"x_own = load_split({str(cifar_dir)!r}, 'train', limit=32).images\n"
        f"run_dir = {str(smoke_sweep['out'])!r}\n"
        "x = images_uint8_nhwc\n"
        "x_float = torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255\n"
        "perm = np.random.default_rng(0).permutation(96)\n"  # LE's 4x4 nibble key
        "flip = np.random.default_rng(1).permutation(48) > 24\n"
    )
    blocks = doc_blocks.run_by("tests/test_commands.py::test_doc_python_examples_run_as_written")
    assert {block.language for block in blocks} == {"python"} and len(blocks) >= 5
    for block in blocks:
        script = prelude + block.text
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=tmp_path,
            env=USER_ENV,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, block.where() + "\n" + block.text + done.stderr[-3000:]
    assert load_split(cifar_dir, "test", limit=1).images.dtype == np.uint8


def test_quickstart_commands_run_as_written(tmp_path):
    """The README's Quickstart block, line by line (its encrypt line on a 1,000-image limit,
    as written), in a fresh checkout's directory with the data where the README says:
    ../shared/data beside the checkout. Its key is the one its keygen line makes."""
    (block,) = doc_blocks.run_by("tests/test_commands.py::test_quickstart_commands_run_as_written")
    work = tmp_path / "checkout"
    work.mkdir()
    (tmp_path / "shared").symlink_to(REPO_ROOT.parent / "shared")
    printed = [run(*line.split("#")[0].split()[1:], cwd=work) for line in block.text.splitlines()]
    key = load_key(work / "keys" / "master.json")
    assert stat.S_IMODE((work / "keys" / "master.json").stat().st_mode) == 0o600
    assert key.fingerprint in printed[2].stdout  # key-info names it by fingerprint
    manifest = json.loads((work / "runs" / "dk" / "manifest.json").read_text())
    assert manifest["rows"] == {"train": 1000, "test": 1000}
