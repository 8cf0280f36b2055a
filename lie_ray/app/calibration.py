"""``--calibration RUN``: an earlier sweep's measured times make the next estimate's.

``--estimate``'s probe times bare PyTorch in one process. A run adds to that, on the same
cores: Train workers, Ray's helper processes, the data pipelines, start-up; on 2 cores that was
1.3-1.6x (bench/train.py, two study sweeps), more than the 25% the estimate should hold to. No
probe of a few seconds sees those costs, but a finished sweep on the same machine measured
them: its ``timings.json`` holds each phase's wall time beside what the bare model predicted.
The ratio of the two, per phase, scales the next prediction, and says where it came from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lie_ray.errors import LieRayError
from lie_ray.infra import provenance

TIMINGS = "timings.json"


@dataclass(frozen=True)
class Calibration:
    """Measured over bare-model wall time, per phase, on the machine ``source`` ran on."""

    training: float
    evaluation: float
    source: str  # the timings file it was read from
    preset: str  # what that run's settings were (fixed costs weigh differently elsewhere)

    def record(self) -> dict:
        return {
            "training": self.training,
            "evaluation": self.evaluation,
            "source": self.source,
            "preset": self.preset,
        }

    def describe(self) -> str:
        return (
            f"calibrated by {self.source} ({self.preset} preset, same machine): training "
            f"x{self.training:.2f}, evaluation x{self.evaluation:.2f}"
        )


def scale_of(calibration: Calibration | None, phase: str) -> float:
    """What ``phase`` ("training" or "evaluation") is scaled by: 1 when uncalibrated."""
    return getattr(calibration, phase) if calibration is not None else 1.0


def read_calibration(path: Path | str) -> Calibration:
    """The ratios of the sweep whose ``--out`` (or ``timings.json``) is ``path``, after checking
    that it ran on this machine: another machine's overheads say nothing about this one's."""
    path = Path(path)
    timings_path = path / TIMINGS if path.is_dir() else path
    try:
        timings = json.loads(timings_path.read_text())
        predicted = timings["predicted"]
        measured = timings["measured_seconds"]
        previous = predicted.get("calibration") or {"training": 1.0, "evaluation": 1.0}
        bare_training = predicted["phases"]["training"]["wall_seconds"] / previous["training"]
        bare_evaluation = timings["evaluation_work_done"]["wall_seconds"] / previous["evaluation"]
        ratios = measured["training"] / bare_training, measured["evaluation"] / bare_evaluation
    except FileNotFoundError:
        raise LieRayError(
            f"--calibration {path}: no {TIMINGS} there; pass the --out folder of a finished sweep"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as error:
        raise LieRayError(
            f"--calibration {timings_path} is not a finished sweep's timings "
            f"({type(error).__name__}: {error}); pass the --out folder of a sweep "
            "that ran to its end"
        ) from None
    if not all(math.isfinite(r) and r > 0 for r in ratios):
        raise LieRayError(
            f"--calibration {timings_path} holds no usable times: pass the --out "
            "folder of a sweep that trained and evaluated"
        )
    if timings.get("resumed"):
        raise LieRayError(
            f"--calibration {timings_path} is from a resumed sweep, which skipped "
            "finished work: pass a sweep that ran whole"
        )
    import torch  # noqa: F401 (machine() lists GPUs only once torch is loaded, as it was
    # when the sweep wrote timings.json; the sweep reads --calibration before that)

    here, there = provenance.machine(), timings.get("machine", {})
    if (there.get("cpu"), there.get("cores"), there.get("gpus")) != (
        here["cpu"],
        here["cores"],
        here["gpus"],
    ):
        raise LieRayError(
            f"--calibration {timings_path} ran on {describe_machine(there)}, "
            f"not this {describe_machine(here)}: calibrate with a sweep run here"
        )
    return Calibration(
        *ratios, source=str(timings_path), preset=timings.get("preset") or "unrecorded"
    )


def describe_machine(machine: dict) -> str:
    gpus = machine.get("gpus") or []
    return f"{machine.get('cpu', '?')} with {machine.get('cores', '?')} cores" + (
        f" and {', '.join(gpus)}" if gpus else ""
    )
