"""The sweep on a real multi-node Ray cluster on this machine, with S3 storage (moto).

A ``ray.cluster_utils.Cluster`` (head with 0 CPUs and the dashboard, worker nodes with a few
logical CPUs each) runs in a process of its own (tests/cluster_host.py), apart from the test
session's embedded Ray. The smoke sweep on a slice is submitted with ``ray job submit``;
``--storage`` and ``--key`` point into a bucket of a local moto S3 server; the credentials
reach the job's driver, trial, worker and actor processes only through the job's runtime env.
Mid-training, the node one trial trains on is killed and another added: one sweep shows both
that a cluster's sweep writes what it should where it should and that a lost node costs
nothing (a run takes minutes; this one serves every test here).

Run just these: ``python -m pytest -m multinode``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet as pq
import pytest

from lie_ray.infra import storage
from lie_ray.keys import generate_key
from tests.conftest import EVAL_SLICE, HEAD_ENV, RAY_CLI, REPO_ROOT, cli_args, ensure_auth_token
from tests.s3 import CREDENTIALS, moto_bucket

pytestmark = pytest.mark.multinode

# One Train worker per trial (2.25 logical CPUs a trial), so 3 worker nodes of 2 CPUs hold
# two trials at once and no single node holds both.
EPOCHS = 6  # enough that a node can be lost mid-training (the s3_sweep fixture)
SLICE = {
    "epochs": EPOCHS,
    "train_limit": 512,
    "test_limit": 128,
    "width": 4,
    "batch_size": 64,
    "num_workers": 1,
}
SCENARIOS = "Plain,Encrypted"
# What the job driver writes into --out; everything written from other processes is in storage.
DRIVER_FILES = {
    "training.parquet",
    "examples.parquet",
    "results.parquet",
    "report.md",
    "curves.png",
    "gallery.png",
    "encrypted/preview.png",
    "cluster.parquet",
    "cluster.png",
    "logs/sweep.log",
    "logs/console.log",  # the driver's own stdout and stderr beyond lie_ray's lines
    "timings.json",
    "adversarial/Plain.parquet",  # the images that decided each worst case
    "adversarial/Encrypted.parquet",
    "cards/Plain.json",
    "cards/Encrypted.json",
}
CLUSTER_ENV = {
    **{k: v for k, v in HEAD_ENV.items() if not k.startswith("AWS_")},
    # notice a lost node within seconds (Ray's own job tests do the same)
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "3",
}


class ClusterHost:
    """tests/cluster_host.py as a child process; its nodes end when it does."""

    def __init__(self, workers: list[int], temp_dir: Path):
        spec = json.dumps({"workers": workers, "temp_dir": str(temp_dir)})
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "tests" / "cluster_host.py"), spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=CLUSTER_ENV,
            cwd=REPO_ROOT,
        )
        self.info = self.read()

    def read(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            pytest.fail(f"the cluster host exited ({self.process.wait()})", pytrace=False)
        return json.loads(line)

    def ask(self, **command) -> dict:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.ask(cmd="quit")
            self.process.wait(timeout=120)


@pytest.fixture(scope="module")
def cluster():
    ensure_auth_token()  # the nodes run in token mode; a fresh machine has no token yet
    temp_dir = Path(tempfile.mkdtemp(prefix="lr-mn-", dir="/tmp"))
    host = ClusterHost([2, 2, 2], temp_dir)
    try:
        yield host
    finally:
        host.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def bucket():
    with moto_bucket() as made:
        yield made


def put_key(bucket, name: str) -> tuple[str, str]:
    """A master key uploaded as an object, as a user puts one next to the data."""
    key = generate_key(4)
    uri = bucket.uri(f"keys/{name}.json")
    with_credentials(lambda: storage.write_bytes(uri, key.to_json().encode()))
    return uri, key.fingerprint


def with_credentials(action):
    saved = {k: os.environ.get(k) for k in CREDENTIALS}
    os.environ.update(CREDENTIALS)
    try:
        return action()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def submit_sweep(
    cluster: ClusterHost, out: Path, guard_log: Path, args: list[str], wait: bool = True
):
    """``ray job submit`` of the sweep; credentials and the write guard ride in the runtime env."""
    runtime_env = {
        "env_vars": {
            **CREDENTIALS,
            "LIE_RAY_GUARDED": str(out),
            "LIE_RAY_GUARD_LOG": str(guard_log),
        },
        "worker_process_setup_hook": "tests.write_guard.install",
    }
    command = [
        RAY_CLI,
        "job",
        "submit",
        "--address",
        cluster.info["dashboard"],
        "--working-dir",
        str(REPO_ROOT),
        "--runtime-env-json",
        json.dumps(runtime_env),
        "--",
        sys.executable,
        "-m",
        "lie_ray.sweep",
        "--preset",
        "smoke",
        "--data",
        str(
            Path(
                os.environ.get(
                    "LIE_RAY_DATA", REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-py"
                )
            )
        ),
        "--out",
        str(out),
        "--scenarios",
        SCENARIOS,
        "--no-privacy",
        *cli_args(SLICE),
        *cli_args(EVAL_SLICE),
        *args,
    ]
    if not wait:
        return subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=REPO_ROOT,
            env=CLUSTER_ENV,
        )
    return subprocess.run(
        command, capture_output=True, text=True, timeout=900, cwd=REPO_ROOT, env=CLUSTER_ENV
    )


@pytest.fixture(scope="module")
def s3_sweep(cluster, bucket, tmp_path_factory):
    """One sweep, disturbed: the node a trial trains on is killed (ungracefully) after that
    trial's second checkpoint, and a fresh node added so capacity remains. Every test below
    reads it: the trials side by side, the tables complete, what went to storage, the key, and
    the lost node's trial resumed from its checkpoint in storage. Six epochs on 512 images:
    training outlasts the checkpoint by far more than the time it takes to notice it, even on
    a busy machine."""
    out = tmp_path_factory.mktemp("mn") / "out"
    guard_log = tmp_path_factory.mktemp("guard") / "writes.log"
    key_uri, fingerprint = put_key(bucket, "master")
    started = time.monotonic()
    job = submit_sweep(
        cluster,
        out,
        guard_log,
        ["--storage", bucket.uri("study"), "--key", key_uri],
        wait=False,
    )
    try:
        lost = checkpoint_of_epoch(bucket, "study/runs/", 2, time.monotonic() + 600)
        assert lost["epoch"] < EPOCHS
        assert lost["node"] in cluster.ask(cmd="nodes")["workers"]
        cluster.ask(cmd="remove", node_id=lost["node"])
        replacement = cluster.ask(cmd="add", num_cpus=2)["added"]
        print(
            f"removed node {lost['node']} after {lost['scenario']} checkpointed epoch "
            f"{lost['epoch']}; added {replacement}"
        )
        output, _ = job.communicate(timeout=900)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, output[-6000:]
    return {
        "out": out,
        "guard_log": guard_log,
        "output": output,
        "wall": time.monotonic() - started,
        "key_uri": key_uri,
        "fingerprint": fingerprint,
        "lost": lost,
    }


def test_trials_ran_side_by_side_on_two_worker_nodes(cluster, s3_sweep):
    training = pq.read_table(s3_sweep["out"] / "training.parquet").to_pylist()
    assert sorted(r["scenario"] for r in training) == ["Encrypted", "Plain"]
    nodes = {r["scenario"]: r["node"] for r in training}
    print(f"job wall time {s3_sweep['wall']:.1f} s; rank-0 nodes: {nodes}")
    assert set(nodes.values()) <= set(cluster.ask(cmd="nodes")["workers"])  # never the head
    assert len(set(nodes.values())) == 2, nodes
    first, second = sorted(training, key=lambda r: r["started_at"])
    assert second["started_at"] < first["finished_at"], "the trials ran one after the other"
    assert "up to 2 at once" in s3_sweep["output"]
    for row in training:
        assert row["epochs"] == EPOCHS and row["train_images"] == 512 and row["test_images"] == 128
        assert row["checkpoint"].startswith("s3://") and "endpoint_override=" in row["checkpoint"]
    assert {r["key_fingerprint"] for r in training if r["encrypted"]} == {s3_sweep["fingerprint"]}


def test_every_table_is_complete(s3_sweep):
    out = s3_sweep["out"]
    examples = pq.read_table(out / "examples.parquet")
    results = pq.read_table(out / "results.parquet").to_pylist()
    limit = EVAL_SLICE["eval_limit"]
    for scenario in ("Plain", "Encrypted"):
        rows = [r for r in results if r["scenario"] == scenario]
        assert {r["evaluation"] for r in rows} >= {"test", "train", "pgd", "worst-case"}
        assert all(r["n"] == limit for r in rows if r["evaluation"] not in ("test", "train"))
    keys = examples.select(["scenario", "evaluation", "epsilon", "id"]).to_pylist()
    assert len(keys) == len({tuple(k.values()) for k in keys})  # nothing duplicated
    report = (out / "report.md").read_text()
    assert "Plain" in report and "Encrypted" in report


def test_nodes_wrote_to_storage_and_only_the_driver_to_out(bucket, s3_sweep):
    out = s3_sweep["out"]
    written = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert written == DRIVER_FILES
    assert not s3_sweep["guard_log"].exists(), s3_sweep["guard_log"].read_text()
    objects = bucket.keys("study/")
    prefixes = sorted({"/".join(k.split("/")[:3]) for k in objects if k.count("/") >= 2})
    print("object prefixes:", prefixes)
    run_ids = {
        r["scenario"]: r["run_id"] for r in pq.read_table(out / "training.parquet").to_pylist()
    }
    for expected in (
        "study/encrypted/train",
        "study/encrypted/test",
        f"study/runs/Plain-{run_ids['Plain'][:12]}/checkpoint_",  # run-id names
        f"study/runs/Encrypted-{run_ids['Encrypted'][:12]}/checkpoint_",
        "study/train-plan.json",
        "study/train/Plain",
        "study/evaluations/Plain.parquet",
        "study/evaluations/Encrypted.parquet",
    ):
        assert any(k.startswith(expected) for k in objects), (expected, prefixes)
    assert "study/encrypted/manifest.json" in objects
    # Its worst cases check out from the driver's files and the checkpoints in the bucket.
    checked = subprocess.run(
        [sys.executable, "-m", "lie_ray", "verify", str(out), "--key", s3_sweep["key_uri"]],
        env={**os.environ, **CREDENTIALS},
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "every one agrees with results.parquet" in checked.stdout
    assert any(k.startswith("study/encrypted/train/") and k.endswith(".parquet") for k in objects)
    assert any("/checkpoint_" in k and k.endswith("/state.pt") for k in objects)


def test_the_key_stayed_in_its_bucket(bucket, s3_sweep):
    secret = json.loads(with_credentials(lambda: storage.read_bytes(s3_sweep["key_uri"])))["secret"]
    assert secret not in s3_sweep["output"]
    for name in bucket.keys("study/"):
        if name.endswith((".json", ".pkl", ".csv")):
            body = bucket.client().get_object(Bucket=bucket.name, Key=name)["Body"].read()
            assert secret.encode() not in body, name


# ---------------------------------------------------------------------------- a node lost


def checkpoint_of_epoch(bucket, prefix: str, epoch: int, deadline: float) -> dict:
    """The first checkpoint of ``epoch`` or later that a run writes under ``prefix`` (its
    meta.json, read from S3): which scenario, which epoch, the node its rank-0 worker is on.

    Epoch 2, not 1: a checkpoint's files reach storage a moment before Ray Train registers
    them, so a node killed right after the first upload may leave nothing to resume from
    (RAY_NOTES); by the second upload the first is registered."""
    client = bucket.client()
    while time.monotonic() < deadline:
        for name in bucket.keys(prefix):
            if name.endswith("/meta.json") and "/checkpoint_" in name:
                meta = json.loads(client.get_object(Bucket=bucket.name, Key=name)["Body"].read())
                if meta["epoch"] >= epoch:
                    return {**meta, "object": name}
        time.sleep(0.25)  # polling storage for an event outside our control, not synchronising
    pytest.fail("no checkpoint appeared in storage", pytrace=False)


def test_a_node_lost_mid_training_costs_nothing(s3_sweep):
    """The sweep finished although a node went mid-training: the trial on it resumed from its
    checkpoint in storage on another node, trained every epoch, and its tables are whole (the
    completeness of every table is test_every_table_is_complete's, on this same sweep)."""
    out, lost = s3_sweep["out"], s3_sweep["lost"]
    training = {r["scenario"]: r for r in pq.read_table(out / "training.parquet").to_pylist()}
    hit = training[lost["scenario"]]
    print("resumed_from_epoch:", {s: r["resumed_from_epoch"] for s, r in training.items()})
    print(
        "\n".join(
            line
            for line in s3_sweep["output"].splitlines()
            if f"{lost['scenario']}: epoch" in line or "finished training" in line
        )
    )
    assert hit["epochs"] == EPOCHS and hit["resumed_from_epoch"] >= 1
    assert hit["node"] != lost["node"]
    assert all(r["epochs"] == EPOCHS for r in training.values())
    # the train rows are the defender's part of the split: here its own --train-limit of 512
    examples = pq.read_table(out / "examples.parquet")
    train_rows = pa.compute.equal(examples["evaluation"], "train")
    assert examples.filter(train_rows).group_by("scenario").aggregate([("id", "count_distinct")])[
        "id_count_distinct"
    ].to_pylist() == [512] * len(training)
