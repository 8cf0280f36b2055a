"""Shared fixtures: one Ray instance per test session, and the project's real CIFAR-10 subset."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import ray

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar-10-batches-py"


@pytest.fixture(scope="session")
def ray_cluster():
    """One embedded Ray for the whole session (RAY_NOTES.md: never several on one host).

    8 logical CPUs on 2 cores: a training trial holds 3.25 (driver, 2 DDP workers, Ray Data),
    and two trials side by side overlap their start-ups. Logical CPUs are scheduling tokens.
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
        pytest.fail(f"CIFAR-10 data not found at {path}: check out ../shared beside the repo or "
                    "set LIE_RAY_DATA", pytrace=False)
    return path
