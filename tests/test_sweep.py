"""The front door: the sweep submitted to a real Ray head, resumed after a kill, and a secrets
audit of everything it wrote. Faults are real: processes are killed with SIGKILL."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import HEAD_ENV, LIGHT_EVAL, REPO_ROOT, TRAIN_SLICE, cli_args
from PIL import Image

from lie_ray import transforms
from lie_ray.infra.provenance import record_of
from lie_ray.keys import load_key
from lie_ray.scenarios import PAPER_SCENARIOS


# --------------------------------------------------------------- ray job submit, end to end
def test_job_submitted_sweep_writes_every_table_and_the_report(smoke_sweep):
    out, output = smoke_sweep["out"], smoke_sweep["output"]
    training = pq.read_table(out / "training.parquet").to_pylist()
    assert [row["scenario"] for row in training] == list(PAPER_SCENARIOS)
    results = pq.read_table(out / "results.parquet").to_pandas()
    assert set(results.scenario) == set(PAPER_SCENARIOS)
    # The attacks at the sweep's epsilons; the unbounded sanity run (eps 1) alone beyond them.
    sanity = results.evaluation.str.startswith("sanity-")
    assert set(results[~sanity].epsilon) == {0.0, 0.1}
    assert set(results[results.epsilon == 1.0].evaluation) == {"sanity-unbounded"}
    examples = pq.read_table(out / "examples.parquet")
    assert examples.num_rows > 0 and "adv_pred" in examples.column_names
    assert "| Encrypted-DK |" in (out / "report.md").read_text()
    for picture in ("curves.png", "gallery.png", "encrypted/preview.png"):
        with Image.open(out / picture) as png:
            assert png.size[0] > 50
    assert json.loads((out / "encrypted" / "manifest.json").read_text())["rows"]["train"] == 256
    # Progress a user can follow: every phase announced with its time, then the summary.
    for number, phase in enumerate(
        ["keys", "encryption", "training", "evaluation", "privacy", "report"]
    ):
        assert f"[{number + 1}/6] {phase} done in" in output
    # The privacy phase: the transforms asked for attacked, its table beside the robustness
    # tables, its record naming them.
    table = pq.read_table(out / "privacy.parquet")
    privacy = table.to_pandas()
    assert set(privacy["transform"]) == {"le", "shuffle"}
    assert record_of(table.schema)["transforms"] == ["le", "shuffle"]
    recovered = privacy[privacy.attack == "known-plaintext"].set_index("transform").key_recovered
    assert recovered["le"] and recovered["shuffle"]  # one real image pair is enough
    assert "## Privacy" in (out / "report.md").read_text()
    # train, test, pgd, keyless, worst, channel: every cell a number (at the largest attacked
    # epsilon, not the sanity checks' unbounded run, where only that run has rows).
    assert re.search(r"Encrypted-Adv-DK" + r"\s+[\d.]+" * 7 + r"\s*$", output, re.M)
    assert f"report      {out / 'report.md'}" in output
    # A quiet console (no Ray Data execution plans; Tune's table names each scenario rather
    # than printing its record), while the driver's whole log is kept under OUT.
    assert "Execution plan of Dataset" not in output and "'steps':" not in output
    assert "[6/6] report done in" in (out / "logs" / "sweep.log").read_text()
    # Nothing of Ray's own on the console: its C++ line about Ray Data's actor arguments, Ray
    # Data's notices, the raylet's worker-count warnings, Train's lines per report and Tune's
    # boxes per trial. The driver's share of it is kept in OUT/logs/console.log (so it was
    # there to be hidden); Tune's table of trials shows once.
    for noise in (
        "core_worker.cc",
        "PYTHON worker processes",
        "Progress bars disabled",
        "execution finished in",
        "Reporting training result",
        "Moving model to device",
        "started with configuration",
    ):
        assert noise not in output, noise
    assert "core_worker.cc" in (out / "logs" / "console.log").read_text()
    assert output.count("Trial name") == 1 and "Encrypted-Adv-DK   TERMINATED" in output
    # The sweep's own console, from its command line to its summary ('ray job submit' adds
    # its own lines around it).
    driver = output.split("Running entrypoint for job")[1].split("tensorboard --logdir")[0]
    assert 30 < len(driver.splitlines()) < 80, driver


def test_sweep_keeps_its_predicted_beside_its_measured_times(smoke_sweep):
    """timings.json: each phase's wall time as the sweep's log line gives it, and the cost
    model applied to what examples.parquet says ran equal to --estimate's full-mode count (the
    smoke preset attacks every image with every attack: two derivations, one from the
    settings, one from the run's own rows) less the recovered-key rows handed a smaller k's
    outcome, priced by hand as one PGD each; the report shows both beside each other."""
    out = smoke_sweep["out"]
    timings = json.loads((out / "timings.json").read_text())
    logged = {
        m[1]: float(m[2])
        for m in re.finditer(
            r"\[\d/6\] (\w+) done in ([\d.]+) s", (out / "logs" / "sweep.log").read_text()
        )
    }
    for phase in ("keys", "encryption", "training", "evaluation", "privacy"):
        assert timings["measured_seconds"][phase] == pytest.approx(logged[phase], abs=0.051)
    predicted = timings["predicted"]["phases"]
    assert predicted["training"]["wall_seconds"] > 0
    examples = pq.read_table(out / "examples.parquet").to_pandas()
    reused = examples[examples.reused]
    assert set(reused.evaluation) <= {"recovered-key-2", "recovered-key-4"}
    key = ["id", "epsilon"]  # each reused row has the prediction of a smaller k's
    for name, rows in reused.groupby("evaluation"):
        smaller = examples[
            examples.evaluation.isin(["recovered-key-1", "recovered-key-2"][: int(name[-1]) // 2])
        ]
        merged = rows.merge(smaller, on=["scenario", *key], suffixes=("", "_smaller"))
        assert (
            merged.groupby(["scenario", *key])
            .apply(lambda m: (m.adv_pred == m.adv_pred_smaller).any())
            .all()
        )
    settings, per_pass = (
        record_of(pq.read_schema(out / "examples.parquet"))["settings"],
        timings["predicted"]["seconds_per_pass"],
    )
    runs = settings["pgd_restarts"]
    one_pgd = settings["pgd_steps"] * runs * per_pass["attack"] + (runs + 1) * per_pass["forward"]
    print(f"{len(reused)} recovered-key rows reused a smaller k's outcome")  # shown by -rP
    assert timings["evaluation_work_done"]["device_seconds"] + len(
        reused
    ) * one_pgd == pytest.approx(predicted["evaluation (full)"]["device_seconds"], rel=1e-9)
    assert timings["machine"]["cores"] >= 1 and timings["machine"]["cpu"]
    section = (out / "report.md").read_text().split("## Time: predicted beside measured")[1]
    for phase in ("encryption", "training", "evaluation", "privacy"):  # each beside its time
        assert re.search(
            rf"^\| {phase} \(expected\) \| [\d.]+ (s|min) \([\d.]+ (s|min) - [\d.]+ (s|min)\)"
            r" \| [\d.]+ (s|min) \| [\d.]+ \((agree|differ)\)",
            section,
            re.M,
        ), section


def test_sweep_made_its_own_key_private(smoke_sweep):
    key_path = smoke_sweep["key_path"]
    assert key_path.stat().st_mode & 0o777 == 0o600
    fingerprint = load_key(key_path).fingerprint
    assert fingerprint in smoke_sweep["output"]


# -------------------------------------------------------------------------------- secrets
def key_material_forms(key_path: Path) -> list[str]:
    """Every form in which the key could leak: the file's secret as stored, its hex, base64
    and the derived permutations (fixed, the first per-minibatch and test keys) as text."""
    record = json.loads(key_path.read_text())
    raw = base64.b64decode(record["secret"])
    key = load_key(key_path)
    forms = [
        record["secret"],
        raw.hex(),
        raw.hex().upper(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
    ]
    for label in ["fixed", "minibatch/0/0", "minibatch/0/1", "batch/test/0", "batch/train/0"]:
        perm = transforms.build("le", key, label=label).perm.tolist()
        forms += [
            ", ".join(map(str, perm[:12])),
            " ".join(map(str, perm[:12])),
            ",".join(map(str, perm[:12])),
        ]
    return forms


def test_no_key_material_in_any_file_log_or_console_output(smoke_sweep, ray_head):
    forms = [form.encode() for form in key_material_forms(smoke_sweep["key_path"])]
    # Everything the sweep wrote (but the key file itself), and every log of the Ray head it
    # ran on: drivers, Tune and Train controllers, workers, Ray Data actors, the job server.
    places = [smoke_sweep["out"], ray_head["temp_dir"]]
    scanned = 0
    for root in places:
        for path in root.rglob("*"):
            if not path.is_file() or path == smoke_sweep["key_path"] or path.is_socket():
                continue
            try:
                blob = path.read_bytes()
            except OSError:
                continue  # a socket or a file Ray removed meanwhile
            scanned += 1
            for form in forms:
                assert form not in blob, f"key material in {path}"
    assert scanned > 50
    for form in forms:
        assert form.decode() not in smoke_sweep["output"]


# ------------------------------------------------------------------ interrupted, then resumed
def sweep_command(out: Path, cifar_dir: Path, *extra: str) -> list[str]:
    # Two scenarios side by side (the smoke preset runs two trials at once), light attacks.
    return [
        sys.executable,
        "-m",
        "lie_ray.sweep",
        "--preset",
        "smoke",
        "--data",
        str(cifar_dir),
        "--out",
        str(out),
        "--scenarios",
        "Plain,Encrypted",
        *cli_args(TRAIN_SLICE),
        *LIGHT_EVAL,
        "--no-privacy",
        *extra,
    ]


def on_head(ray_head) -> dict:
    return {**HEAD_ENV, "RAY_ADDRESS": ray_head["gcs"]}


def test_killed_sweep_resumes_without_retraining_what_finished(ray_head, cifar_dir, tmp_path):
    out = tmp_path / "out"
    driver = subprocess.Popen(
        sweep_command(out, cifar_dir),
        cwd=REPO_ROOT,
        env=on_head(ray_head),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    first = None
    seen = []
    for line in driver.stdout:  # blocks until the driver prints; no sleeping
        seen.append(line)
        match = re.search(r"finished training (\S+):", line)
        if match:
            first = match.group(1)
            driver.send_signal(signal.SIGKILL)  # the driver dies mid-sweep, for real
            break
    driver.wait(timeout=120)
    assert first is not None, "".join(seen[-40:])
    assert driver.returncode == -signal.SIGKILL
    assert not (out / "results.parquet").exists()
    other = ({"Plain", "Encrypted"} - {first}).pop()

    resumed = subprocess.run(
        sweep_command(out, cifar_dir, "--resume"),
        cwd=REPO_ROOT,
        env=on_head(ray_head),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, output[-5000:]
    assert "are complete: not encrypted again" in output
    assert f"{first}: epoch" not in output  # the finished trial did no training at all
    assert (
        f"{other}: epoch 1/1 done" in output or f"{other}: already trained for 1 epochs" in output
    )
    training = {row["scenario"]: row for row in pq.read_table(out / "training.parquet").to_pylist()}
    assert set(training) == {"Plain", "Encrypted"}
    assert all(row["epochs"] == 1 for row in training.values())
    results = pq.read_table(out / "results.parquet").to_pandas()
    assert set(results.scenario) == {"Plain", "Encrypted"}

    again = subprocess.run(
        sweep_command(out, cifar_dir, "--resume"),
        cwd=REPO_ROOT,
        env=on_head(ray_head),
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = again.stdout + again.stderr
    assert again.returncode == 0, output[-5000:]
    for name in ("Plain", "Encrypted"):  # a finished sweep resumed redoes nothing
        assert f"{name}: already evaluated" in output
        assert f"{name}: epoch" not in output


def tracebacks_through_lie_ray(output: str) -> list[str]:
    """Tracebacks that pass through lie_ray's code. Ray's own threads may print theirs: with
    two Ray instances on one host (the tests' embedded one and this head), Train's
    placement-group cleaner cannot tell which to query; that is not the driver failing."""
    blocks = re.split(r"(?m)^Traceback \(most recent call last\):$", output)[1:]
    return [b for b in blocks if re.search(r'File ".*/lie_ray/', b.split("\n\n")[0])]


# ------------------------------------------------------------------- a worker killed mid-epoch
def train_worker_of(ray_head) -> int:
    """The pid of a live Ray Train worker of this head: a process titled ``ray::RayTrainWorker``
    whose raylet runs in the head's temp dir (other Ray instances on the host are left alone)."""
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        if not " ".join(process.info["cmdline"] or []).startswith("ray::RayTrainWorker"):
            continue
        with contextlib.suppress(psutil.Error):
            if any(
                str(ray_head["temp_dir"]) in " ".join(parent.cmdline())
                for parent in process.parents()
            ):
                return process.pid
    raise AssertionError("no Ray Train worker of the test head is running")


def test_training_survives_a_worker_killed_mid_epoch(ray_head, cifar_dir, tmp_path):
    # Four epochs of 512 images: rank 0 is killed as soon as it reports epoch 2, so during
    # epoch 3. Ray Train's FailureConfig restarts the worker group from the latest checkpoint
    # the controller has registered (epoch 2's, or epoch 1's if epoch 2's was still in flight).
    command = [
        sys.executable,
        "-m",
        "lie_ray",
        "train",
        "--preset",
        "smoke",
        "--data",
        str(cifar_dir),
        "--out",
        str(tmp_path / "out"),
        "--scenarios",
        "Plain",
        *cli_args({**TRAIN_SLICE, "epochs": 4, "train_limit": 512, "num_workers": 2}),
    ]
    trainer = subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=on_head(ray_head),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    killed, seen = None, []
    for line in trainer.stdout:
        seen.append(line)
        if "Plain: epoch 2/4 done" in line and killed is None:
            killed = train_worker_of(ray_head)
            os.kill(killed, signal.SIGKILL)
    trainer.wait(timeout=60)
    output = "".join(seen)
    assert killed is not None, output[-5000:]
    assert trainer.returncode == 0, output[-5000:]
    row = pq.read_table(tmp_path / "out" / "training.parquet").to_pylist()[0]
    assert row["epochs"] == 4  # the final metrics arrived, with the right epoch count
    assert row["resumed_from_epoch"] in (1, 2)  # restarted from a checkpoint, not epoch 0
    assert "Plain: epoch 4/4 done" in output
