"""How many scenario trials the cluster runs side by side, and a clear refusal when it runs none.

A trial holds a quarter CPU for its driver, one CPU per Train worker (or one GPU per worker on
a GPU cluster) and one CPU for its Ray Data pipelines. Tune runs as many trials at once as the
cluster offers: what it has now, or on an autoscaling cluster what its config lets it grow to.
A cluster that cannot hold one trial would wait forever ("0.25/2 CPUs" and nothing moving), so
the job stops at once instead, saying what is missing.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import ray

from lie_ray.errors import LieRayError
from lie_ray.training.settings import TRIAL_DRIVER_CPUS, TrainSettings, data_cpus

log = logging.getLogger("lie_ray")
AUTOSCALER_STATUS_KEY = "__autoscaling_status"  # written by a running autoscaler (v1 and v2)


@dataclass(frozen=True)
class TrialNeeds:
    cpus: float
    gpus: int
    data_cpus: float

    def describe(self, workers: int) -> str:
        worker = "1 GPU" if self.gpus else "1 CPU"
        return (
            f"{self.cpus:g} CPUs{f' and {self.gpus} GPUs' if self.gpus else ''} "
            f"({TRIAL_DRIVER_CPUS:g} trial driver + {worker} per Train worker x {workers} "
            f"+ {self.data_cpus:g} for Ray Data)"
        )


def trial_needs(settings: TrainSettings, use_gpu: bool) -> TrialNeeds:
    """What one trial holds: the only statement of this rule (the module docstring's)."""
    workers = settings.num_workers
    data = data_cpus(workers, use_gpu)
    cpus = TRIAL_DRIVER_CPUS + (0 if use_gpu else workers) + data
    return TrialNeeds(cpus=cpus, gpus=workers if use_gpu else 0, data_cpus=data)


def embedded_cpus(settings: TrainSettings) -> int:
    """Logical CPUs an embedded Ray needs to run ``max_concurrent_trials`` at once: what each
    CPU trial holds (``trial_needs``), plus one."""
    return int((settings.max_concurrent_trials or 1) * trial_needs(settings, False).cpus) + 1


def cluster_capacity() -> tuple[dict[str, float], bool]:
    """(resources the cluster has or may grow to, whether an autoscaler may add nodes whose
    sizes Ray does not tell us)."""
    resources = dict(ray.cluster_resources())
    ceiling = None
    try:
        ceiling = ray._private.state.state.get_max_resources_from_cluster_config()
    except Exception:  # an older GCS, or no autoscaler: what the cluster has now is all
        log.debug("no autoscaler cluster config", exc_info=True)
    for name, value in (ceiling or {}).items():
        resources[name] = max(resources.get(name, 0), value)
    return resources, ceiling is None and autoscaler_running()


def autoscaler_running() -> bool:
    from ray.experimental.internal_kv import _internal_kv_get

    try:
        return _internal_kv_get(AUTOSCALER_STATUS_KEY) is not None
    except Exception:
        return False


def concurrent_trials(
    settings: TrainSettings, use_gpu: bool, trials: int, cap: int | None = None
) -> int:
    """Trials to run at once: as many as the cluster holds, at most ``cap`` and ``trials``.

    Raises a one-line error when the cluster (as big as it may grow) holds none."""
    needs = trial_needs(settings, use_gpu)
    resources, grows_unknown = cluster_capacity()
    cpus, gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    fits = math.floor(cpus / needs.cpus + 1e-9)
    if needs.gpus:
        fits = min(fits, math.floor(gpus / needs.gpus + 1e-9))
    limit = min(trials, cap) if cap else trials
    if fits >= 1:
        return max(1, min(fits, limit))
    if grows_unknown:
        log.info(
            "the cluster has %g CPUs and %g GPUs now and an autoscaler of unknown reach: "
            "running up to %d trials at once (--max-concurrent-trials)",
            cpus,
            gpus,
            limit,
        )
        return max(1, limit)
    raise LieRayError(
        f"the Ray cluster has {cpus:g} CPUs{f' and {gpus:g} GPUs' if needs.gpus else ''}, but "
        f"one training trial needs {needs.describe(settings.num_workers)}: start Ray with more "
        f"logical CPUs (e.g. 'ray start --head --num-cpus={math.ceil(needs.cpus) + 1}'; they "
        f"may exceed the cores) or add nodes{' with GPUs' if needs.gpus else ''}"
        + (", or pass --workers 1" if settings.num_workers > 1 else "")
    )
