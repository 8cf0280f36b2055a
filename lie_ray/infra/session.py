"""Start, join or reuse Ray, so every command works the same on a laptop and on a cluster.

* Ray already initialised (tests, notebooks, an enclosing command): use it, leave it running.
* ``RAY_ADDRESS`` set, or running inside ``ray job submit``: join that cluster.
* Otherwise: start an embedded local Ray and stop it when the command ends. Its processes
  (GCS, raylet, and through the raylet every worker) run in a session of their own: Ctrl-C
  in a terminal signals the whole foreground process group, and ``kill -TERM -- -PGID`` (a
  batch scheduler) the whole group, and Ray's processes in the user's group died under the
  driver (the GCS first, so the driver hung on it, then died in Ray's C++ code). Out of the
  group, the signal reaches only the driver, which stops the job and then Ray. They still
  die with the driver: Ray starts them with the kernel's parent-death signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import ray

from lie_ray.errors import LieRayError

log = logging.getLogger("lie_ray")

# Logical CPUs for the embedded Ray. More than 2 physical cores on purpose: a Tune trial, its
# Train workers and Ray Data's actors each hold one, and with too few ingest stalls (RAY_NOTES).
# Logical CPUs are scheduling tokens; the OS shares the physical cores among the processes.
DEFAULT_LOCAL_CPUS = max(4, os.cpu_count() or 1)
# Ray's log monitor re-globs the session's log folder every 0.1 s while it holds fewer files
# than RAY_LOG_MONITOR_MANY_FILES_THRESHOLD (1000), and every LOG_NAME_UPDATE_INTERVAL_S above
# it: 0.02-0.03 of 2 cores while a trial trains (bench/train.py), the costliest of Ray's
# daemons there. Once a second is enough: a new worker's first lines reach the console up to
# a second later. For the embedded Ray only (a user's own values win); on a cluster node the
# same 0.02 cores is a sliver of its cores.
LOG_MONITOR_ENV = {"RAY_LOG_MONITOR_MANY_FILES_THRESHOLD": "0", "LOG_NAME_UPDATE_INTERVAL_S": "1"}


@contextlib.contextmanager
def ray_session(num_cpus: int | None = None, keep_logs: Path | None = None) -> Iterator[None]:
    """``keep_logs``: a folder to copy the embedded Ray's session logs into at the end, when
    the console was quiet (workers' output is not forwarded to the driver then)."""
    from lie_ray.infra.console import (
        keep_driver_logging,
        keep_session_logs,
        verbose,
        worker_logging_config,
    )

    if ray.is_initialized():
        yield
        return
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Workers log warnings, and their output stays in their log files, unless verbose.
    quiet = {"logging_config": worker_logging_config(), "log_to_driver": verbose()}
    # torch before ray.init: a job driver that loads torch only after joining a cluster died
    # at once with "Intel oneMKL FATAL ERROR: Cannot load libtorch_cpu.so" (RAY_NOTES.md).
    import torch  # noqa: F401

    if os.environ.get("RAY_ADDRESS"):
        log.info("joining the Ray cluster at %s", os.environ["RAY_ADDRESS"])
        ray.init(**quiet)
        dashboard, keep_logs = None, None  # a cluster's logs stay on its nodes
    else:
        # The dashboard: users watch jobs, actors and Train runs there, and without it Ray
        # Train's placement-group cleaner warns once a second that it cannot query state.
        # Ray's default (None) starts it, but a dashboard slow to come up (60 s, seen on a
        # loaded 2-core CI machine) is logged rather than fatal, as True would make it: the
        # command's work does not need it.
        for name, value in LOG_MONITOR_ENV.items():
            os.environ.setdefault(name, value)
        with own_session_for_ray_processes():
            dashboard = ray.init(
                address="local",
                num_cpus=max(num_cpus or 0, DEFAULT_LOCAL_CPUS),
                include_dashboard=None,
                **quiet,
            ).dashboard_url
    keep_driver_logging(handlers, level)
    if dashboard:
        log.info("Ray dashboard (jobs, actors, Train runs): http://%s", dashboard)
    try:
        yield
    finally:
        if keep_logs is not None and not verbose():
            keep_session_logs(keep_logs)
        ray.shutdown()


@contextlib.contextmanager
def own_session_for_ray_processes() -> Iterator[None]:
    """Processes Ray starts inside the block begin a new session (``setsid``), out of the
    terminal's process group. Ray has no option for it; every process it starts goes through
    ``ray._private.services.ConsolePopen``, so that is the one place to ask."""
    from ray._private import services

    original = services.ConsolePopen
    if os.name != "posix":
        yield
        return

    class OwnSessionPopen(original):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("start_new_session", True)
            super().__init__(*args, **kwargs)

    services.ConsolePopen = OwnSessionPopen
    try:
        yield
    finally:
        services.ConsolePopen = original


def wants_gpu(choice: str) -> bool:
    """``--gpu``: "yes" asks for GPUs (an autoscaling cluster then adds GPU nodes), "auto" uses
    them only when the cluster has some now, "no" never."""
    check_gpu_choice(choice)
    return choice == "yes" or (choice == "auto" and ray.cluster_resources().get("GPU", 0) > 0)


def check_gpu_choice(choice: str) -> None:
    """``--gpu``'s values; jobs check it in their driver, before Ray starts."""
    if choice not in ("auto", "yes", "no"):
        raise LieRayError(f"--gpu must be auto, yes or no, got {choice!r}")
