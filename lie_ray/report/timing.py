"""The report's time section: each phase as ``--estimate`` predicted it before the sweep ran,
beside what the sweep measured (``timings.json``, written by ``lie_ray.app.study``).

The evaluation's prediction is a range before the run (the cascade's floor to every attack on
every image: how much the cascade skips depends on what breaks); after it, the same cost model
applied to the work the run really did is the figure to hold the measurement against.
"""

from __future__ import annotations

import json
from pathlib import Path

AGREE = 0.25  # measured within 25% of predicted: the model holds on this machine


def timing_section(directory: Path) -> str:
    path = Path(directory) / "timings.json"
    if not path.is_file():
        return ""
    timings = json.loads(path.read_text())
    predicted, measured = timings["predicted"], timings["measured_seconds"]
    phases = predicted["phases"]
    machine = timings.get("machine", {})
    rows = []
    if "training" in phases and "training" in measured:
        rows.append(
            (
                "training",
                minutes(phases["training"]["wall_seconds"]),
                measured["training"],
                phases["training"]["wall_seconds"],
            )
        )
    if "evaluation" in measured and "evaluation (full)" in phases:
        full = phases["evaluation (full)"]["wall_seconds"]
        floor = phases.get("evaluation (cascade floor)", {}).get("wall_seconds", full)
        done = timings["evaluation_work_done"]["wall_seconds"]
        before = f"{minutes(floor)} to {minutes(full)}" if floor != full else minutes(full)
        rows.append(
            (
                "evaluation",
                f"{before} before; {minutes(done)} for the work done",
                measured["evaluation"],
                done,
            )
        )
    calibration = predicted.get("calibration")
    scaled = (
        f"; scaled by the times {calibration['source']} measured on this machine "
        f"({calibration['preset']} preset): training x{calibration['training']:.2f}, "
        f"evaluation x{calibration['evaluation']:.2f}"
        if calibration
        else "; uncalibrated"
    )
    lines = [
        "\n## Time: predicted beside measured\n",
        f"`--estimate`'s cost model, probed in the sweep's driver before anything ran (one "
        f"thread of bare PyTorch on {machine.get('cpu', 'this machine')}, "
        f"{machine.get('cores', '?')} cores; {predicted['devices']} "
        f"{predicted['device_type']} device(s); probe spread "
        f"{predicted['spread']:.0%}{scaled}), beside the sweep's wall time per phase"
        + (" (a resumed run: finished work was not redone)" if timings.get("resumed") else "")
        + ".\n",
        "| phase | predicted | measured | measured / predicted |",
        "|---|---|---|---|",
    ]
    for name, said, seconds, against in rows:
        lines.append(
            f"| {name} (bare) | {said} | {minutes(seconds)} | {verdict(seconds, against)} |"
        )
    expected = predicted.get("expected") or {}
    for name, figures in expected.items():
        seconds = sum(measured.values()) if name == "total" else measured.get(name)
        if seconds is None:
            continue
        said = (
            f"{minutes(figures['wall_seconds'])} ({minutes(figures['low'])} - "
            f"{minutes(figures['high'])})"
        )
        shown = "whole sweep" if name == "total" else name
        lines.append(
            f"| {shown} (expected) | {said} | {minutes(seconds)} | "
            f"{verdict(seconds, figures['wall_seconds'])} |"
        )
    if not expected:
        others = sum(v for k, v in measured.items() if k not in ("training", "evaluation"))
        lines.append(f"| keys, encryption, privacy, report | not modelled | {minutes(others)} | |")
        lines.append(f"| whole sweep | | {minutes(sum(measured.values()))} | |")
    lines.append(
        "\nThe `bare` rows are the probe's bare PyTorch in one process; uncalibrated, their "
        "ratio above 1 is what the run adds on the same cores: Ray's Train workers and "
        "helper processes, the data pipelines, start-up (`bench/train.py` measures Ray's "
        "share). The `expected` rows add those (`lie_ray.app.overheads`: start-ups priced "
        "by this machine's probe, Ray's helpers' share of the cores) and are the prediction "
        "to hold a first run against. `--calibration` with this run's folder folds the "
        "measured ratios into the next prediction on this machine.\n"
    )
    return "\n".join(lines)


def verdict(seconds: float, against: float) -> str:
    ratio = seconds / against if against else float("nan")
    return f"{ratio:.2f} ({'agree' if abs(ratio - 1) <= AGREE else 'differ'})"


def minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
