"""Scale from zero: the sweep on Ray's local fake-multinode autoscaler (autoscaler v1).

The head has 0 CPUs; one worker type (2 CPUs and a custom ``fake_gpu``, never ``GPU``, which
would make Ray pick CUDA devices) has ``min_workers: 0`` and ``max_workers: 3``. The sweep's
demand makes the autoscaler start worker nodes; once idle they go again. The head is
``ray start --head --block --autoscaling-config=FILE``, started here on free ports with its own
temp dir and stopped by its process id (``AutoscalingCluster.start/shutdown`` and ``ray stop``
would stop every Ray on the machine).

Run just these: ``python -m pytest -m multinode``.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from tests.conftest import (
    HEAD_ENV,
    LIGHT_EVAL,
    RAY_CLI,
    REPO_ROOT,
    cli_args,
    ensure_auth_token,
    free_port,
)

pytestmark = pytest.mark.multinode

WORKER_TYPE = "ray.worker.cpu"
SLICE = {
    "epochs": 1,
    "train_limit": 256,
    "test_limit": 128,
    "width": 4,
    "batch_size": 64,
    "num_workers": 1,
}


def autoscaling_config(gcs_address: str) -> dict:
    """A complete fake_multinode cluster config (Ray 2.60's wheel lacks the example.yaml that
    ``AutoscalingCluster`` builds on)."""
    return {
        "cluster_name": "lie-ray-fake",
        "max_workers": 3,
        "upscaling_speed": 10.0,
        "idle_timeout_minutes": 0.1,
        "provider": {
            "type": "fake_multinode",
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
            "gcs_address": gcs_address,
        },
        "auth": {"ssh_user": "ubuntu"},
        "head_node_type": "ray.head.default",
        "available_node_types": {
            "ray.head.default": {"resources": {"CPU": 0}, "node_config": {}, "max_workers": 0},
            WORKER_TYPE: {
                "resources": {"CPU": 2, "fake_gpu": 1, "object_store_memory": 150 * 1024 * 1024},
                "node_config": {},
                "min_workers": 0,
                "max_workers": 3,
            },
        },
        "docker": {},
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


@pytest.fixture(scope="module")
def autoscaling_head():
    ensure_auth_token()
    temp_dir = Path(tempfile.mkdtemp(prefix="lr-as-", dir="/tmp"))
    port, dashboard = free_port(), free_port()
    config = temp_dir / "cluster.json"
    config.write_text(json.dumps(autoscaling_config(f"127.0.0.1:{port}")))
    env = {**HEAD_ENV, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
    command = [
        RAY_CLI,
        "start",
        "--head",
        "--block",
        "--num-cpus=0",
        "--disable-usage-stats",
        f"--autoscaling-config={config}",
        f"--port={port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dashboard}",
        f"--temp-dir={temp_dir}",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--metrics-export-port={free_port()}",
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    seen = []
    for line in process.stdout:
        seen.append(line)
        if "Ray runtime started" in line:
            break
    else:
        pytest.fail("ray start --head failed:\n" + "".join(seen[-20:]), pytrace=False)
    threading.Thread(target=process.stdout.read, daemon=True).start()
    head = {
        "gcs": f"127.0.0.1:{port}",
        "dashboard": f"http://127.0.0.1:{dashboard}",
        "temp_dir": temp_dir,
        "env": env,
    }
    try:
        yield head
    finally:
        # The fake worker nodes are children of the autoscaler, not of 'ray start': stop any
        # still alive (ours: they name this head's GCS address) after the head, by process id.
        leftovers = ours(f"127.0.0.1:{port}")
        process.terminate()
        process.wait(timeout=120)
        for child in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        psutil.wait_procs(leftovers, timeout=30)
        shutil.rmtree(temp_dir, ignore_errors=True)


def ours(gcs_address: str) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(gcs_address in part for part in process.info["cmdline"] or []):
                found.append(process)
    return found


def worker_nodes(head: dict) -> int:
    """Alive worker nodes (the head excluded), from the state API over the dashboard."""
    result = subprocess.run(
        [
            RAY_CLI,
            "list",
            "nodes",
            "--address",
            head["dashboard"],
            "--format",
            "json",
            "--limit",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=head["env"],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    nodes = json.loads(result.stdout)
    return sum(1 for n in nodes if n["state"] == "ALIVE" and not n["is_head_node"])


def test_the_sweep_scales_a_cluster_from_zero_and_back(autoscaling_head, cifar_dir, tmp_path):
    head = autoscaling_head
    before = worker_nodes(head)
    print(f"{time.strftime('%H:%M:%S')} worker nodes before: {before}")
    assert before == 0
    out = tmp_path / "out"
    started = time.monotonic()
    result = subprocess.run(
        # No --working-dir: the fake nodes share the head's session directory, so one node
        # dropping a job's working_dir package would delete it under every other process.
        # The nodes run this checkout through the venv's editable install instead.
        [
            RAY_CLI,
            "job",
            "submit",
            "--address",
            head["dashboard"],
            "--",
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
            "--no-privacy",
            *cli_args(SLICE),
            *LIGHT_EVAL,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
        env=head["env"],
    )
    finished = time.monotonic()
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    cluster = pq.read_table(out / "cluster.parquet").to_pylist()
    peak = max(row["alive_nodes"] for row in cluster) - 1  # minus the head
    peak_at = next(r["time"] for r in cluster if r["alive_nodes"] - 1 == peak)
    changes = [
        (round(r["time"] - cluster[0]["time"]), r["phase"], r["alive_nodes"] - 1)
        for i, r in enumerate(cluster)
        if i == 0 or r["alive_nodes"] != cluster[i - 1]["alive_nodes"]
    ]
    print(
        f"sweep {finished - started:.0f} s; peak {peak} worker nodes "
        f"{peak_at - cluster[0]['time']:.0f} s into it; (seconds, phase, worker nodes) "
        f"whenever the count changed: {changes}"
    )
    assert peak >= 2
    assert max(row["cpus_total"] for row in cluster) == 2 * peak
    training = pq.read_table(out / "training.parquet").to_pylist()
    assert sorted(r["scenario"] for r in training) == ["Encrypted", "Plain"]
    assert all(r["epochs"] == 1 and r["node"] for r in training)
    results = pq.read_table(out / "results.parquet")
    assert set(results.column("scenario").to_pylist()) == {"Encrypted", "Plain"}
    deadline = time.monotonic() + 180
    after = worker_nodes(head)
    while after and time.monotonic() < deadline:
        time.sleep(2)  # waiting for the autoscaler's idle timeout, an outside event
        after = worker_nodes(head)
    print(
        f"{time.strftime('%H:%M:%S')} worker nodes after: {after}, "
        f"{time.monotonic() - finished:.0f} s after the sweep"
    )
    assert after == 0
