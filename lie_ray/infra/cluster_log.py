"""What the cluster looked like while a sweep ran: ``OUT/cluster.parquet`` and ``cluster.png``.

On an autoscaling cluster, users want to see what they paid for: how many nodes were alive,
how many CPUs and GPUs the cluster had and how many were in use, phase by phase. A thread in the
driver samples Ray's resource view every few seconds (cheap GCS reads, no tasks); the report
plots it with the phases shaded.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import pyarrow as pa

log = logging.getLogger("lie_ray")
COLUMNS = ("time", "phase", "alive_nodes", "cpus_total", "cpus_used", "gpus_total", "gpus_used")


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
        self.rows.append({
            "time": time.time(), "phase": self.phase, "alive_nodes": len(nodes),
            "cpus_total": float(total.get("CPU", 0)),
            "cpus_used": float(total.get("CPU", 0) - free.get("CPU", 0)),
            "gpus_total": float(total.get("GPU", 0)),
            "gpus_used": float(total.get("GPU", 0) - free.get("GPU", 0))})

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def table(self) -> pa.Table:
        schema = pa.schema([("time", pa.float64()), ("phase", pa.string()),
                            ("alive_nodes", pa.int64())] +
                           [(c, pa.float64()) for c in COLUMNS[3:]])
        return pa.Table.from_pylist(self.rows, schema=schema)

    def start(self) -> "ClusterRecorder":
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._stop.set()
            self._thread.join(timeout=30)
            self.sample()  # the state at the end, whatever the interval


def cluster_section(directory: Path) -> str:
    """Markdown for the report (and ``cluster.png``) when ``cluster.parquet`` is there."""
    path = Path(directory) / "cluster.parquet"
    if not path.is_file():
        return ""
    import pyarrow.parquet as pq

    rows = pq.read_table(path).to_pylist()
    if not rows:
        return ""
    plot_cluster(rows, Path(directory) / "cluster.png")
    peak_nodes = max(r["alive_nodes"] for r in rows)
    peak_cpus = max(r["cpus_used"] for r in rows)
    return ("\n## The cluster\n\nAlive nodes, and CPUs and GPUs in total and in use, sampled "
            f"every few seconds (`cluster.parquet`); phases shaded. Peak: {peak_nodes} nodes, "
            f"{peak_cpus:g} CPUs in use.\n\n![cluster](cluster.png)\n")


def plot_cluster(rows: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from lie_ray.infra import atomic

    start = rows[0]["time"]
    minutes = [(r["time"] - start) / 60 for r in rows]
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    nodes_ax, cpu_ax = figure.subplots(2, 1, sharex=True)
    nodes_ax.step(minutes, [r["alive_nodes"] for r in rows], where="post", color="black")
    nodes_ax.set_ylabel("alive nodes")
    for name, colour in (("cpus", "tab:blue"), ("gpus", "tab:green")):
        if any(r[f"{name}_total"] for r in rows):
            cpu_ax.step(minutes, [r[f"{name}_total"] for r in rows], where="post", color=colour,
                        label=f"{name.upper()} total")
            cpu_ax.step(minutes, [r[f"{name}_used"] for r in rows], where="post", color=colour,
                        linestyle="--", label=f"{name.upper()} in use")
    cpu_ax.set_ylabel("logical resources")
    cpu_ax.set_xlabel("minutes since the sweep started")
    cpu_ax.legend(loc="upper right", fontsize="small")
    spans, shades = phase_spans(rows, minutes), ("#f2f2f2", "#dcdcdc")
    for index, (name, begin, end) in enumerate(spans):
        for axis in (nodes_ax, cpu_ax):
            axis.axvspan(begin, end, color=shades[index % 2], zorder=0)
        nodes_ax.text((begin + end) / 2, 1.02, name, transform=nodes_ax.get_xaxis_transform(),
                      ha="center", va="bottom", fontsize="small")
    figure.tight_layout()
    with atomic.staged_file(path) as staging:
        figure.savefig(staging, format="png", dpi=100)


def phase_spans(rows: list[dict], minutes: list[float]) -> list[tuple[str, float, float]]:
    spans: list[tuple[str, float, float]] = []
    for row, minute in zip(rows, minutes):
        if spans and spans[-1][0] == row["phase"]:
            spans[-1] = (row["phase"], spans[-1][1], minute)
        else:
            if spans:
                spans[-1] = (spans[-1][0], spans[-1][1], minute)
            spans.append((row["phase"], minute, minute))
    return spans
