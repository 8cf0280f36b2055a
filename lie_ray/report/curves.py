"""``curves.png``: error against epsilon, one subplot per scenario, one line per evaluation.

The thick black lines are the worst cases (solid: keyless; densely dashed: with leaked pairs;
dash-dot: with the key; dashed: with the ciphertext-space attack too); lines come in the
adaptive table's column order, in the same colour in every subplot and every run.
"""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lie_ray.attacks.spec import WORST_CASE_NAMES
from lie_ray.infra import atomic
from lie_ray.report.catalogue import Catalogue
from lie_ray.report.paper import Row, is_adversarial

LINE_STYLES = dict(zip(WORST_CASE_NAMES, ("-", (0, (5, 1)), "-.", "--"), strict=True))


def write_curves(
    rows: list[Row], scenarios: list[str], path: Path, catalogue: Catalogue | None = None
) -> None:
    """One subplot per scenario, sharing the 0..1 error axis so scenarios compare at a glance.

    Uses a bare ``Figure`` with the Agg canvas rather than pyplot: no global state, no
    display, safe in any thread or Ray worker. Each evaluation keeps its catalogue colour
    (``AttackSpec.colour``), so it looks the same in every subplot and in every run.
    """
    catalogue = catalogue or Catalogue.builtin()
    rank = legend_rank(catalogue)
    columns = min(3, len(scenarios))
    lines = math.ceil(len(scenarios) / columns)
    figure = Figure(figsize=(4.2 * columns, 3.4 * lines), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(lines, columns, squeeze=False, sharey=True).ravel()
    for axis, scenario in zip(axes, scenarios):
        shown = [r for r in rows if r.scenario == scenario and is_adversarial(r, catalogue)]
        plot_scenario(axis, shown, catalogue, rank)
        axis.set_title(scenario)
    for axis in axes[len(scenarios) :]:
        axis.set_visible(False)
    handles = {}
    for axis in axes[: len(scenarios)]:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if handles:
        order = sorted(handles, key=rank)
        figure.legend(
            [handles[k] for k in order],
            order,
            loc="outside lower center",
            ncols=min(len(order), 7),
            frameon=False,
        )
    with atomic.staged_file(path) as staging:
        figure.savefig(staging, format="png", dpi=100)


def legend_rank(catalogue: Catalogue):
    """The adaptive table's order: the catalogue's attacks, then ones it does not know, the
    worst cases last."""
    known = catalogue.attacks()

    def rank(evaluation: str) -> tuple[int, int, str]:
        if evaluation in WORST_CASE_NAMES:
            return (2, WORST_CASE_NAMES.index(evaluation), evaluation)
        if evaluation in known:
            return (0, known.index(evaluation), evaluation)
        return (1, 0, evaluation)

    return rank


def plot_scenario(axis, rows: list[Row], catalogue: Catalogue, rank) -> None:
    """Every evaluation over the whole test set: a cascaded attack's rows count only the
    images earlier attacks left it (fewer than the worst cases'), so they are no curve."""
    whole = max((r.n for r in rows), default=0)
    partial = {r.evaluation for r in rows if r.n < whole}
    evaluations = sorted({r.evaluation for r in rows} - partial, key=rank)
    for evaluation in evaluations:
        points = sorted((r for r in rows if r.evaluation == evaluation), key=lambda r: r.epsilon)
        x = [r.epsilon for r in points]
        worst = evaluation in WORST_CASE_NAMES
        colour = "black" if worst else catalogue.colour(evaluation)
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
            label=catalogue.label(evaluation),
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
