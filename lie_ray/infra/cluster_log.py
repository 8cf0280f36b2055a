"""What the cluster looked like while a sweep ran: the samples behind ``OUT/cluster.parquet``.

On an autoscaling cluster, users want to see what they paid for: how many nodes were alive,
how many CPUs and GPUs the cluster had and how many were in use, phase by phase. A thread in the
driver samples Ray's resource view every few seconds (cheap GCS reads, no tasks); the report
plots it with the phases shaded (``lie_ray.report.cluster``).
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa

from lie_ray.infra.tables import CLUSTER_COLUMNS as COLUMNS

log = logging.getLogger("lie_ray")


class ClusterRecorder:
    """Samples the cluster every ``interval`` seconds until stopped; ``phase`` labels samples."""

    def __init__(self, interval: float = 2.0):
        self.interval, self.phase = interval, ""
        self.rows: list[dict] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lie_ray-cluster-log", daemon=True)

    def sample(self) -> None:
        import ray

        try:
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            total, free = ray.cluster_resources(), ray.available_resources()
        except Exception:  # the cluster is going away: keep what we have
            log.debug("cluster sample failed", exc_info=True)
            return
        self.rows.append(
            {
                "time": time.time(),
                "phase": self.phase,
                "alive_nodes": len(nodes),
                "cpus_total": float(total.get("CPU", 0)),
                "cpus_used": float(total.get("CPU", 0) - free.get("CPU", 0)),
                "gpus_total": float(total.get("GPU", 0)),
                "gpus_used": float(total.get("GPU", 0) - free.get("GPU", 0)),
            }
        )

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def table(self) -> pa.Table:
        schema = pa.schema(
            [("time", pa.float64()), ("phase", pa.string()), ("alive_nodes", pa.int64())]
            + [(c, pa.float64()) for c in COLUMNS[3:]]
        )
        return pa.Table.from_pylist(self.rows, schema=schema)

    def start(self) -> ClusterRecorder:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=30)
            self.sample()  # the state at the end, whatever the interval
