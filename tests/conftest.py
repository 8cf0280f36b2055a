"""Shared fixtures: one Ray instance per test session, and the project's real CIFAR-10 subset."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest
import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray for the whole session (RAY_NOTES.md: never several on one host).

    8 logical CPUs on 2 cores: a training trial holds 2.25 (driver, a Train worker, Ray Data)
    or 3.25 (two DDP workers), so trials run side by side and overlap their start-ups.
    Logical CPUs are scheduling tokens.
    ``address="local"`` never attaches to a stray cluster started elsewhere on the machine.
    """
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def cifar_dir() -> Path:
    """The real CIFAR-10 subset beside the checkout (or $LIE_RAY_DATA)."""
    path = Path(os.environ.get("LIE_RAY_DATA", SHARED_DATA))
    if not (path / "test_batch").is_file():
        pytest.fail(
            f"CIFAR-10 data not found at {path}: check out ../shared beside the repo or "
            "set LIE_RAY_DATA",
            pytrace=False,
        )
    return path


# A slice of the real data, one epoch, a narrow network and the smoke preset's one Train worker
# (a trial's start-up is its processes, and a second DDP worker is one more to start: DDP over
# two workers runs end to end in test_sweep's worker-killed test and against one process in
# test_training), and light attacks: exactly the code path of the smoke sweep, in minutes.
TRAIN_SLICE = {
    "epochs": 1,
    "train_limit": 256,
    "test_limit": 128,
    "width": 4,
    "batch_size": 64,
    "num_workers": 1,
}
EVAL_SLICE = {
    "eval_limit": 24,
    "epsilons": "0,0.1",
    "eval_pgd_steps": 3,
    "eot_keys": 2,
    "square_queries": 10,
    "pba_steps": 8,
    "key_search_budget": 8,
    "attacker_images": 32,
    "actors": 2,
    # Every attack on every image, as the tests of per-attack rows and of the cost model's
    # full-mode count read them (the smoke preset runs the cascade; test_cascade compares).
    "evaluation": "full",
}
CLI_NAMES = {"num_workers": "workers"}


def cli_args(settings: dict) -> list[str]:
    """{"train_limit": 256} -> ["--train-limit", "256"]."""
    args = []
    for name, value in settings.items():
        args += [f"--{CLI_NAMES.get(name, name).replace('_', '-')}", str(value)]
    return args


# The sweep's privacy phase on two transforms, not seven: the two its tests read (one real
# image pair recovers either key); every transform's attacks are tested in test_privacy*.py.
PRIVACY_SLICE = ["--privacy-transforms", "le,shuffle"]

# The keyless attacker's fit budgets of the slice, for commands that take the smoke preset's
# otherwise (64 images, 25 steps, 25 candidate keys: a minute a test does not need).
FIT_SLICE = cli_args(
    {name: EVAL_SLICE[name] for name in ("pba_steps", "attacker_images", "key_search_budget")}
)


def light_eval(eval_limit: int = 8, epsilons: str = "0.1") -> list[str]:
    """Attacks as light as a test of something else can have them (interrupts, resumes,
    scaling, the commands' chain): each attack at its smallest budget, one actor, on the first
    ``eval_limit`` test images at ``epsilons``."""
    light = {"eval_limit": eval_limit, "epsilons": epsilons, "eval_pgd_steps": 2, "eot_keys": 1}
    return cli_args({**light, "square_queries": 4, "actors": 1}) + FIT_SLICE


LIGHT_EVAL = light_eval()


def lie_ray(*args, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m lie_ray ARGS`` as a user runs it, from the repository root."""
    return subprocess.run(
        [sys.executable, "-m", "lie_ray", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO_ROOT,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


RAY_CLI = str(Path(sys.executable).with_name("ray"))
# Ray >= 2.52 enables token authentication on new clusters. Say so explicitly for the head and
# every process that talks to it (they share the token in ~/.ray/auth_token): left unset, a
# client's mode depends on whether an earlier ray.init in its parent happened to set it.
# A head stopped by SIGTERM first drains (Ray >= 2.5x: for up to 30 s, so Serve replicas can
# move); a test head serves nothing, and after a job it sat out the whole 30 s at every
# teardown. 0 stops it at once (RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S, ray/_private/node.py).
HEAD_ENV = {
    **os.environ,
    "RAY_AUTH_MODE": "token",
    "PYTHONUNBUFFERED": "1",
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}


def ensure_auth_token() -> None:
    """``ray start --head`` in token mode needs ``~/.ray/auth_token`` to exist already (unlike
    ``ray.init`` it never writes one), so on a fresh machine the first head a test started
    failed. ``ray get-auth-token --generate`` writes one only when there is none; the token
    it prints is discarded, never logged."""
    subprocess.run(
        [RAY_CLI, "get-auth-token", "--generate"],
        env=HEAD_ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=120,
    )


@pytest.fixture(scope="session")
def ray_head():
    """A real Ray head with its dashboard and job server, as users start one: ``ray start
    --head --block`` on free ports, stopped by terminating that process by its own id (never
    ``ray stop``, which would stop every Ray on the host). Its logs go to a temp dir of its own,
    so the secrets test can read them."""
    ensure_auth_token()
    temp_dir = Path(tempfile.mkdtemp(prefix="lr-head-", dir="/tmp"))
    ports = {
        name: free_port()
        for name in (
            "port",
            "dashboard-port",
            "ray-client-server-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "metrics-export-port",
            "runtime-env-agent-port",
        )
    }
    command = [
        RAY_CLI,
        "start",
        "--head",
        "--block",
        "--num-cpus=8",
        "--disable-usage-stats",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--temp-dir={temp_dir}",
        *(f"--{name}={port}" for name, port in ports.items()),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=HEAD_ENV
    )
    seen = []
    for line in process.stdout:  # blocks until the head says it is up (or exits)
        seen.append(line)
        if "Ray runtime started" in line:
            break
    else:
        pytest.fail("ray start --head failed:\n" + "".join(seen[-20:]), pytrace=False)
    threading.Thread(target=process.stdout.read, daemon=True).start()  # keep the pipe drained
    yield {
        "gcs": f"127.0.0.1:{ports['port']}",
        "dashboard": f"http://127.0.0.1:{ports['dashboard-port']}",
        "temp_dir": temp_dir,
    }
    process.terminate()
    process.wait(timeout=120)
    shutil.rmtree(temp_dir, ignore_errors=True)
    # 'ray start' records its address for later 'ray.init()' calls; 'ray stop' would remove
    # it, terminating does not. Remove it when it still names this (now stopped) head.
    current = Path(tempfile.gettempdir(), "ray", "ray_current_cluster")
    with contextlib.suppress(OSError):
        if current.read_text().strip().endswith(f":{ports['port']}"):
            current.unlink()


@pytest.fixture(scope="session")
def smoke_sweep(ray_head, tmp_path_factory, cifar_dir):
    """The smoke sweep on a slice, submitted as users submit it: ``ray job submit
    --working-dir . -- python -m lie_ray.sweep``. Training, evaluation and secrets tests read
    what it wrote; its key is the one the sweep made itself."""
    out = tmp_path_factory.mktemp("sweep") / "out"
    command = [
        RAY_CLI,
        "job",
        "submit",
        "--address",
        ray_head["dashboard"],
        "--working-dir",
        str(REPO_ROOT),
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
        *cli_args(TRAIN_SLICE),
        *cli_args(EVAL_SLICE),
        *PRIVACY_SLICE,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=1500, cwd=REPO_ROOT, env=HEAD_ENV
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    return {"out": out, "key_path": out / "keys" / "master.json", "output": output}


@pytest.fixture(scope="session")
def xor_env(tmp_path_factory) -> dict[str, str]:
    """The user's environment with examples/xor_transform installed (tests/plugins.py)."""
    import plugins

    return plugins.installed(plugins.XOR_EXAMPLE, tmp_path_factory)


@pytest.fixture(scope="session")
def xor_board(xor_env, cifar_dir, tmp_path_factory) -> Path:
    """The board preset's sweep of Plain and the XOR plug-in, on its own embedded Ray: the
    plug-in tests read where its transform went, the board tests what the board shows."""
    import plugins

    return plugins.board_sweep_of_xor(xor_env, cifar_dir, tmp_path_factory.mktemp("xor-board"))


@pytest.fixture(scope="session")
def learned(cifar_dir):
    """A Plain and an Encrypted (fixed key) model that learned something (3 epochs on 2048
    images; the slice's one-epoch models are near chance), and 100 test images."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from lie_ray import transforms
    from lie_ray.attacks.outcome import Batch
    from lie_ray.attacks.pipeline import Defender
    from lie_ray.data.cifar import load_split
    from lie_ray.keys import Key
    from lie_ray.keys.policies import FixedPolicy
    from lie_ray.models import build_model
    from lie_ray.transforms import TransformSpec

    torch.manual_seed(0)
    torch.set_num_threads(1)  # on a shared, busy CPU a second thread mostly spins waiting
    train, test = load_split(cifar_dir, "train").head(2048), load_split(cifar_dir, "test").head(100)

    def as_float(split):
        return (torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255).contiguous()

    x, y = as_float(train), torch.from_numpy(train.labels).long()
    key = Key("master", bytes(range(32)), block_size=4)  # fixed: the same models every run
    defenders = {}
    for encrypted in (False, True):
        model = build_model(encrypted=encrypted, width=8, adaptation_channels=16)
        inputs = transforms.build("le", key).encrypt(x) if encrypted else x
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        for _ in range(3):
            for rows in torch.randperm(len(y)).split(64):
                optimizer.zero_grad()
                F.cross_entropy(model(inputs[rows]), y[rows]).backward()
                optimizer.step()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        defenders["Encrypted" if encrypted else "Plain"] = (
            Defender(model.eval(), TransformSpec().keyed(key), FixedPolicy())
            if encrypted
            else Defender(model.eval())
        )
    batch = Batch(as_float(test), torch.from_numpy(test.labels).long(), np.arange(100))
    return defenders, batch


def run_attack(defender, name, batch, eps, settings, done=None, **given):
    """One evaluation of the catalogue on ``batch``, as the engine runs it: handed its tier's
    view (built from ``given``: attacker_images, plain_model) and ``done``, the outcomes that
    ran before it at this epsilon on every row, by name."""
    import numpy as np

    from lie_ray.evaluation.cascade import Row
    from lie_ray.evaluation.engine import Engine

    engine = Engine(defender, settings, given.get("attacker_images"), given.get("plain_model"))
    every = np.arange(len(batch.ids))
    rows = {n: Row(n, eps, every, outcome) for n, outcome in (done or {}).items()}
    return engine.run(engine.by_name[name], batch, eps, every, rows, settings)
