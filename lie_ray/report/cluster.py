"""The cluster section of ``report.md`` and ``cluster.png``, from ``cluster.parquet``.

Alive nodes, and CPUs and GPUs in total and in use, over the sweep, with its phases shaded:
what an autoscaling cluster gave the run (the samples: ``lie_ray.infra.cluster_log``).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lie_ray.infra import atomic
from lie_ray.infra.tables import read_cluster


def cluster_section(directory: Path) -> str:
    """Markdown for the report (and ``cluster.png``) when ``cluster.parquet`` is there."""
    table = read_cluster(directory)
    rows = [] if table is None else table.to_pylist()
    if not rows:
        return ""
    plot_cluster(rows, Path(directory) / "cluster.png")
    peak_nodes = max(r["alive_nodes"] for r in rows)
    peak_cpus = max(r["cpus_used"] for r in rows)
    return (
        "\n## The cluster\n\nAlive nodes, and CPUs and GPUs in total and in use, sampled "
        f"every few seconds (`cluster.parquet`); phases shaded. Peak: {peak_nodes} nodes, "
        f"{peak_cpus:g} CPUs in use.\n\n![cluster](cluster.png)\n"
    )


def plot_cluster(rows: list[dict], path: Path) -> None:
    start = rows[0]["time"]
    minutes = [(r["time"] - start) / 60 for r in rows]
    figure = Figure(figsize=(8, 5))
    FigureCanvasAgg(figure)
    nodes_ax, cpu_ax = figure.subplots(2, 1, sharex=True)
    nodes_ax.step(minutes, [r["alive_nodes"] for r in rows], where="post", color="black")
    nodes_ax.set_ylabel("alive nodes")
    for name, colour in (("cpus", "tab:blue"), ("gpus", "tab:green")):
        if any(r[f"{name}_total"] for r in rows):
            cpu_ax.step(
                minutes,
                [r[f"{name}_total"] for r in rows],
                where="post",
                color=colour,
                label=f"{name.upper()} total",
            )
            cpu_ax.step(
                minutes,
                [r[f"{name}_used"] for r in rows],
                where="post",
                color=colour,
                linestyle="--",
                label=f"{name.upper()} in use",
            )
    cpu_ax.set_ylabel("logical resources")
    cpu_ax.set_xlabel("minutes since the sweep started")
    cpu_ax.legend(loc="upper right", fontsize="small")
    spans, shades = phase_spans(rows, minutes), ("#f2f2f2", "#dcdcdc")
    for index, (name, begin, end) in enumerate(spans):
        for axis in (nodes_ax, cpu_ax):
            axis.axvspan(begin, end, color=shades[index % 2], zorder=0)
        nodes_ax.text(
            (begin + end) / 2,
            1.02,
            name,
            transform=nodes_ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize="small",
        )
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
