"""``curves.png``: error against epsilon, one subplot per scenario, one line per evaluation.

The thick black lines are the worst cases (solid: keyless; dash-dot: with the key; dashed: with
the ciphertext-space attack too); lines come in
the adaptive table's column order, in the same colour in every subplot and every run.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lie_ray.evaluation.settings import WORST_CASES
from lie_ray.infra import atomic
from lie_ray.report.paper import ADAPTIVE_EVALUATIONS, Row, is_adversarial

# Fixed colours, so an evaluation looks the same in every subplot and in every run.
COLOURS = {
    "pgd": "tab:blue",
    "bpda": "tab:orange",
    "eot": "tab:green",
    "transfer": "tab:red",
    "encrypted-input": "tab:purple",
    "gradient-free": "tab:brown",
    "paper-literal": "tab:cyan",
    "bpda-identity": "tab:olive",
    "autoattack": "tab:pink",
    "pba": "gold",
    "recovered-key-1": "navy",
    "recovered-key-2": "teal",
    "recovered-key-4": "maroon",
}
LINE_STYLES = dict(zip(WORST_CASES, ("-", "-.", "--")))


def write_curves(rows: list[Row], scenarios: list[str], path: Path) -> None:
    """One subplot per scenario, sharing the 0..1 error axis so scenarios compare at a glance.

    Uses a bare ``Figure`` with the Agg canvas rather than pyplot: no global state, no
    display, safe in any thread or Ray worker.
    """
    columns = min(3, len(scenarios))
    lines = math.ceil(len(scenarios) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * lines), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False, sharey=True).ravel()
    for axis, scenario in zip(axes, scenarios):
        plot_scenario(axis, [r for r in rows if r.scenario == scenario and is_adversarial(r)])
        axis.set_title(scenario)
    for axis in axes[len(scenarios) :]:
        axis.set_visible(False)
    handles = {}
    for axis in axes[: len(scenarios)]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        order = sorted(handles, key=legend_rank)
        figure.legend(
            [handles[k] for k in order],
            order,
            loc="outside lower center",
            ncols=min(len(order), 7),
            frameon=False,
        )
    with atomic.staged_file(path) as staging:
        figure.savefig(staging, format="png", dpi=100)


def legend_rank(evaluation: str) -> tuple[int, int, str]:
    """The adaptive table's column order: known attacks, then unknown ones, worst case last."""
    if evaluation in WORST_CASES:
        return (2, WORST_CASES.index(evaluation), evaluation)
    if evaluation in ADAPTIVE_EVALUATIONS:
        return (0, ADAPTIVE_EVALUATIONS.index(evaluation), evaluation)
    return (1, 0, evaluation)


def plot_scenario(axis, rows: list[Row]) -> None:
    """Every evaluation over the whole test set: a cascaded attack's rows count only the
    images earlier attacks left it (fewer than the worst cases'), so they are no curve."""
    whole = max((r.n for r in rows), default=0)
    partial = {r.evaluation for r in rows if r.n < whole}
    evaluations = sorted({r.evaluation for r in rows} - partial, key=legend_rank)
    for evaluation in evaluations:
        points = sorted((r for r in rows if r.evaluation == evaluation), key=lambda r: r.epsilon)
        x = [r.epsilon for r in points]
        worst = evaluation in WORST_CASES
        colour = "black" if worst else COLOURS.get(evaluation, "tab:gray")
        axis.fill_between(
            x,
            [r.ci_low for r in points],
            [r.ci_high for r in points],
            color=colour,
            alpha=0.12,
            linewidth=0,
        )
        axis.plot(
            x,
            [r.error for r in points],
            marker="o",
            markersize=3 if not worst else 4,
            linestyle=LINE_STYLES.get(evaluation, "-"),
            color=colour,
            linewidth=3.0 if worst else 1.2,
            zorder=3 if worst else 2,
            label=evaluation,
        )
    if not evaluations:
        axis.text(
            0.5,
            0.5,
            "no adversarial evaluation",
            ha="center",
            va="center",
            transform=axis.transAxes,
        )
    axis.set_ylim(0, 1)
    axis.set_xlabel("epsilon (L-inf, pixel scale)")
    if axis.get_subplotspec().is_first_col():  # the error axis is shared along each row
        axis.set_ylabel("error")
    axis.grid(alpha=0.3)
