"""cluster.yaml and jobs/, checked offline: no AWS, no network, no Ray started.

- the cluster config passes the JSON schema shipped inside the installed ray package and the
  checks `ray up` itself runs before it talks to AWS (``prepare_config`` then
  ``validate_config``, as in ``ray.autoscaler._private.commands._bootstrap_config``);
- it says what this project needs: GPU workers scale from zero, the head has no GPU, every node
  installs the Ray, torch and torchvision versions of this venv, keys never ride along;
- the job scripts parse, fail without RAY_ADDRESS, and submit the commands we mean;
- the runtime env leaves keys, venvs and results out of the upload, by Ray's own matcher.
"""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import ray
import ray.autoscaler
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
CLUSTER_YAML = REPO / "cluster.yaml"
JOBS = REPO / "jobs"
RUNTIME_ENV = JOBS / "runtime_env.yaml"
SCRIPTS = sorted(JOBS.glob("*.sh"))
SCHEMA = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
GPU_FAMILIES = ("g", "p", "inf", "trn", "dl")  # EC2 accelerated-computing instance families


def load_cluster() -> dict:
    return yaml.safe_load(CLUSTER_YAML.read_text())


def ray_checks(config: dict) -> dict:
    """What `ray up` checks before it contacts AWS: merge with the provider's defaults.yaml,
    merge setup commands, fill per-type worker bounds (prepare_config), then schema plus
    cross-field checks (validate_config). The next steps of _bootstrap_config
    (fillout_available_node_types_resources, bootstrap_aws) call AWS and are left out."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def all_setup_commands(config: dict) -> str:
    return "\n".join(
        config.get("setup_commands", [])
        + config.get("head_setup_commands", [])
        + config.get("worker_setup_commands", [])
    )


def base_version(dist: str) -> str:
    return version(dist).split("+")[0]  # drop a local label such as +cpu or +cu128


@pytest.fixture(scope="module")
def cluster() -> dict:
    return load_cluster()


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


def head_and_gpu_workers(config: dict) -> tuple[dict, list[dict]]:
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    workers = [
        t
        for name, t in types.items()
        if name != config["head_node_type"] and t.get("resources", {}).get("GPU", 0) > 0
    ]
    return head, workers


# ---------------------------------------------------------------------------- cluster.yaml


def test_cluster_yaml_matches_rays_schema(cluster, schema):
    jsonschema.validate(cluster, schema)


def test_cluster_yaml_passes_rays_own_checks(cluster):
    prepared = ray_checks(cluster)
    assert prepared["provider"]["type"] == "aws"
    assert prepared["provider"]["region"] == "us-west-2"
    assert prepared["provider"]["cache_stopped_nodes"] is False
    assert prepared["cluster_name"] == "lie-ray"
    # merge_setup_commands: every node type ends up running the common setup first
    assert (
        prepared["worker_setup_commands"][: len(cluster["setup_commands"])]
        == cluster["setup_commands"]
    )


@pytest.mark.parametrize(
    "breakage, error",
    [
        (lambda c: c.update(storage="s3://bucket/lie_ray"), jsonschema.ValidationError),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"]["resources"].update(GPU=0.5),
            jsonschema.ValidationError,
        ),
        (
            lambda c: c["available_node_types"]["ray.worker.gpu"].update(gpus=1),
            jsonschema.ValidationError,
        ),
        (lambda c: c.update(head_node_type="ray.head.missing"), ValueError),
        (lambda c: c["available_node_types"]["ray.worker.gpu"].update(min_workers=9), ValueError),
    ],
    ids=[
        "unknown-top-level-key",
        "fractional-resource",
        "unknown-node-type-key",
        "head-type-not-defined",
        "min-workers-above-max",
    ],
)
def test_broken_copies_are_rejected(cluster, schema, breakage, error):
    broken = copy.deepcopy(cluster)
    breakage(broken)
    with pytest.raises(error):
        ray_checks(broken)  # Ray's validate_config runs the schema, then its own checks
    if error is jsonschema.ValidationError:
        with pytest.raises(error):
            jsonschema.validate(broken, schema)


def test_gpu_workers_scale_from_zero(cluster):
    prepared = ray_checks(cluster)
    head, gpu_workers = head_and_gpu_workers(prepared)
    assert gpu_workers, "no worker node type offers a GPU"
    for worker in gpu_workers:
        assert worker["min_workers"] == 0
        assert 0 < worker["max_workers"] <= prepared["max_workers"]
        assert worker["resources"]["CPU"] >= 2  # a GPU trial: 1 CPU worker + Ray Data ingest
        assert worker["node_config"]["InstanceType"].startswith(GPU_FAMILIES)
    assert prepared["idle_timeout_minutes"] > 0


def test_head_has_no_gpu(cluster):
    head, _ = head_and_gpu_workers(cluster)
    assert head["resources"].get("GPU", 0) == 0
    assert head["resources"].get("CPU", 0) >= 2
    assert not head["node_config"]["InstanceType"].startswith(GPU_FAMILIES)
    assert head.get("min_workers", 0) == 0 and head.get("max_workers", 0) == 0


def test_nodes_install_this_venvs_ray_torch_and_the_project(cluster):
    setup = "\n".join(cluster["setup_commands"])
    pins = re.findall(r"ray\[([a-z,]+)\]==([0-9][\w.]*)", setup)
    assert pins, "setup_commands install no pinned ray[...]"
    for extras, pinned in pins:
        assert pinned == ray.__version__, f"nodes get ray {pinned}, this venv has {ray.__version__}"
        assert {"default", "data", "train", "tune"} <= set(extras.split(","))
    assert f"torch=={base_version('torch')}" in setup
    assert f"torchvision=={base_version('torchvision')}" in setup
    assert "torch==2.14.1" in setup
    assert re.search(r"pip install .*-e /home/ubuntu/lie_ray\b", setup)
    # the head's autoscaler launches workers through boto3; overriding head_setup_commands
    # drops Ray's default that installed it
    assert "boto3" in "\n".join(cluster["head_setup_commands"])


def test_nodes_run_this_venvs_python(cluster):
    wanted = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert re.search(rf"--python {re.escape(wanted)}\b", "\n".join(cluster["setup_commands"]))


def test_ray_start_commands(cluster):
    head = "\n".join(cluster["head_start_ray_commands"])
    assert "ray start --head --port=6379" in head
    assert "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert "--dashboard-host=0.0.0.0" in head
    worker = "\n".join(cluster["worker_start_ray_commands"])
    assert "ray start --address=$RAY_HEAD_IP:6379" in worker
    for commands in (cluster["head_start_ray_commands"], cluster["worker_start_ray_commands"]):
        assert commands[0] == "ray stop"


def test_file_mounts_ship_the_package_but_never_keys(cluster):
    mounts = cluster["file_mounts"]
    for remote, local in mounts.items():
        source = (REPO / local).resolve()
        assert source.exists(), f"file mount source {local} missing: run ray up from the repo"
        assert source != REPO, "mounting the whole checkout ships keys/, runs/ and .venv"
        assert not {"keys", "runs", ".venv", ".git"} & set(source.relative_to(REPO).parts)
        assert remote.startswith("/home/ubuntu/lie_ray/")
    # pip install -e needs the package, pyproject.toml and the README pyproject names
    assert {Path(local).name for local in mounts.values()} >= {
        "lie_ray",
        "pyproject.toml",
        "README.md",
    }
    # the key path every job passes must be what the head syncs to the workers
    assert "/home/ubuntu/lie_ray_keys" in cluster["cluster_synced_files"]


# ---------------------------------------------------------------------------- jobs/


def test_there_are_the_three_job_scripts():
    assert [p.name for p in SCRIPTS] == ["evaluate.sh", "paper.sh", "smoke.sh"]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_job_script_parses_and_is_executable(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert os.access(script, os.X_OK), f"chmod +x {script.relative_to(REPO)}"
    text = script.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "Usage:" in text
    assert "--runtime-env jobs/runtime_env.yaml" in text


def run_script(script: Path, tmp_path: Path, env: dict[str, str], *args: str):
    """Run a job script against a stub `ray` that records its arguments, one per line."""
    stub_dir = tmp_path / "bin"
    stub_dir.mkdir(exist_ok=True)
    record = tmp_path / "ray-args"
    stub = stub_dir / "ray"
    stub.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > "{record}"\n')
    stub.chmod(0o755)
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("RAY_ADDRESS", "STORAGE", "OUT", "DATA", "KEY", "RUNS", "PRESET", "SUBMISSION_ID")
    }
    clean["PATH"] = f"{stub_dir}{os.pathsep}{clean['PATH']}"
    result = subprocess.run(
        ["bash", str(script), *args],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=10,
    )
    argv = record.read_text().splitlines() if record.exists() else None
    return result, argv


def split_submit(argv: list[str]) -> tuple[list[str], list[str]]:
    assert argv[:2] == ["job", "submit"]
    cut = argv.index("--")
    return argv[2:cut], argv[cut + 1 :]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_job_script_needs_ray_address(script, tmp_path):
    result, argv = run_script(script, tmp_path, {"STORAGE": "s3://bucket/lie_ray"})
    assert result.returncode != 0 and argv is None
    assert "RAY_ADDRESS" in result.stderr


def test_smoke_script_submits_the_smoke_sweep(tmp_path):
    result, argv = run_script(
        JOBS / "smoke.sh", tmp_path, {"RAY_ADDRESS": "http://127.0.0.1:8265"}, "--resume"
    )
    assert result.returncode == 0, result.stderr
    options, entry = split_submit(argv)
    assert options == ["--runtime-env", "jobs/runtime_env.yaml"]
    assert entry[:5] == ["python", "-m", "lie_ray.sweep", "--preset", "smoke"]
    assert entry[entry.index("--key") + 1] == "/home/ubuntu/lie_ray_keys/master.json"
    assert "--storage" not in entry and entry[-1] == "--resume"
    # an absolute --out: a relative one would land in the job's temporary working directory
    assert entry[entry.index("--out") + 1].startswith("/")


def test_paper_script_submits_on_gpus_with_shared_storage(tmp_path):
    env = {"RAY_ADDRESS": "http://127.0.0.1:8265"}
    result, argv = run_script(JOBS / "paper.sh", tmp_path, env)
    assert result.returncode != 0 and argv is None and "STORAGE" in result.stderr
    env["STORAGE"] = "s3://bucket/lie_ray"
    result, argv = run_script(JOBS / "paper.sh", tmp_path, env, "--workers", "4")
    assert result.returncode == 0, result.stderr
    options, entry = split_submit(argv)
    assert "--no-wait" in options and "--submission-id" in options
    assert entry[:5] == ["python", "-m", "lie_ray.sweep", "--preset", "paper"]
    # GPU workers start at zero: 'auto' would find no GPU and train on CPUs
    assert entry[entry.index("--gpu") + 1] == "yes"
    assert entry[entry.index("--storage") + 1] == "s3://bucket/lie_ray"
    assert entry[-2:] == ["--workers", "4"]
    assert "ray job logs -f" in result.stdout


def test_evaluate_script_submits_lie_ray_evaluate(tmp_path):
    result, argv = run_script(
        JOBS / "evaluate.sh", tmp_path, {"RAY_ADDRESS": "http://127.0.0.1:8265", "RUNS": "/r"}
    )
    assert result.returncode == 0, result.stderr
    _, entry = split_submit(argv)
    assert entry[:6] == ["python", "-m", "lie_ray", "evaluate", "--preset", "paper"]
    assert entry[entry.index("--runs") + 1] == "/r"
    assert {"--out", "--key", "--data"} <= set(entry)


# ---------------------------------------------------------------------------- runtime_env


@pytest.fixture(scope="module")
def runtime_env() -> dict:
    return yaml.safe_load(RUNTIME_ENV.read_text())


def test_runtime_env_is_valid_and_holds_no_secrets(runtime_env):
    from ray.runtime_env import RuntimeEnv

    RuntimeEnv(**runtime_env)  # Ray's own type checks of each field
    assert runtime_env["working_dir"] == "."
    assert "pip" not in runtime_env and "conda" not in runtime_env  # nodes have it installed
    for name in runtime_env.get("env_vars", {}):  # shown by `ray job list`
        assert not re.search(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", name, re.I), name
    assert "keys/" in runtime_env["excludes"]


def package(root: Path, excludes: list[str], out: Path, include_gitignore: bool) -> set[str]:
    """Zip ``root`` exactly as `ray job submit` packages a working_dir; return the entries."""
    from ray._private.runtime_env import packaging

    if not hasattr(packaging, "_zip_files"):
        pytest.skip("this Ray has no packaging._zip_files to check excludes with")
    packaging._zip_files(str(root), excludes, str(out), include_gitignore=include_gitignore)
    with zipfile.ZipFile(out) as archive:
        return set(archive.namelist())


def test_runtime_env_excludes_keep_secrets_and_bulk_out(runtime_env, tmp_path):
    tree = tmp_path / "checkout"
    files = {
        # uploaded
        "pyproject.toml",
        "lie_ray/__init__.py",
        "lie_ray/keys.py",
        "lie_ray/data/cifar.py",
        "jobs/smoke.sh",
        # never uploaded
        "keys/master.json",
        "runs/sweep/keys/master.json",
        "runs/sweep/results.parquet",
        "elsewhere/deploy.key",
        ".venv/lib/site.py",
        ".git/config",
        "out/model.pt",
        "lie_ray/__pycache__/x.pyc",
        "table.parquet",
    }
    for name in files:
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text("x")
    # without .gitignore's help: the excludes alone must keep secrets out
    entries = package(tree, runtime_env["excludes"], tmp_path / "pkg.zip", False)
    assert entries == {
        "pyproject.toml",
        "lie_ray/__init__.py",
        "lie_ray/keys.py",
        "lie_ray/data/cifar.py",
        "jobs/smoke.sh",
    }


def test_runtime_env_upload_of_this_checkout_is_small_and_keyless(runtime_env, tmp_path):
    from ray._private.runtime_env.packaging import GCS_STORAGE_MAX_SIZE

    entries = package(REPO, runtime_env["excludes"], tmp_path / "repo.zip", True)
    assert "lie_ray/__init__.py" in entries and "jobs/runtime_env.yaml" in entries
    bad = [
        e
        for e in entries
        if re.match(r"(keys|runs|out|\.venv|\.git)/", e)
        or "/keys/" in e
        or e.endswith((".parquet", ".key", ".pt"))
    ]
    assert not bad, bad
    assert (tmp_path / "repo.zip").stat().st_size < GCS_STORAGE_MAX_SIZE // 8
