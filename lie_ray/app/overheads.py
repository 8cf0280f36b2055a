"""What a run adds to bare PyTorch on the same machine, priced before it starts.

``--estimate``'s probe times the network alone, in one process. A sweep also starts processes
(a Tune trial, its Train controller and workers; the evaluation's fit tasks and actor pool; the
privacy phase's jobs), streams data through Ray Data every epoch, checkpoints and reports, and
shares the cores with Ray's own helpers (about 0.26 of 2 cores: ``bench/train.py``). On a
first smoke sweep those made training take 2.05x its bare prediction.

Start-up of every kind is a multiple of one thing this machine can be asked in a few seconds:
how long a Python process takes to import torch and Ray here (``startup_probe``). The
multiples below were measured on whole sweeps (``docs/measurements.md``: the smoke sweep's
phases against their bare compute), so a slower machine's start-ups scale with its probe, and
its compute with the network probe. Ray's helpers stretch compute that fills every core by
cores / (cores - 0.26); on a GPU node they are negligible.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

RAY_HELPER_CORES = 0.26  # Ray's ~18 helper processes, busy, on a 2-core machine (bench/train.py)

# Fixed costs in start-ups (``startup_probe``: 2.73 s there), each measured on a smoke sweep
# of 2026-12-07 on an AMD EPYC with 2 cores (docs/measurements.md): a phase's wall, or its
# part, less the compute the network probe priced, over the start-up.
TRIAL_STARTS = 12.0  # a Tune trial: its actor, Train's controller and workers, data and key
EPOCH_STARTS = 0.75  # each epoch: the Ray Data pipeline's start, validation, checkpoint, report
TRAINING_STARTS = 1.0  # Tune's start and the results table
FIT_TASK_STARTS = 5.0  # a keyless fit's task: its process, the checkpoint and the key
EVALUATION_STARTS = 1.5  # the data, the tables and the gallery, around the pool
ENCRYPTION_STARTS = 4.0  # the encryption's Ray Data job over the train split
# A transform's ITN job, key searches and scoring: 2.1 from the smoke sweep of an Intel Xeon
# (0.98 of its measured), which left three runs on AMD EPYC 2-cores at 1.39-1.54x (the smoke
# sweep and two board runs, 60-63 s of privacy each); 2.6 puts all four within 25%
# (0.79 there, 1.12-1.24 here).
PRIVACY_STARTS_PER_TRANSFORM = 2.6
REPORT_STARTS = 0.3
# Adversarial training's attack step runs in train mode at the training batch, through the
# cipher's BPDA: it took twice the probe's attack pass (eval mode, no cipher) per image.
ADVERSARIAL_STEP = 2.0
# The share of the work above the cascade's floor that a cascade does: 0.10 in the board's
# evaluation (eight study-scale models, 2026-12-07: 4,085 device-seconds of work done against
# a floor of 3,432 and 9,837 for every attack on every image), where cheap attacks break most
# images and the costly ones meet few. A second board run did 0.11 (4,367 device-seconds; floor
# 3,640; everything 10,273). The range stays the floor to all of it.
CASCADE_SHARE = 0.10


def startup_probe(repeats: int = 2) -> float:
    """Seconds for a Python process to import torch and Ray here (the least of ``repeats``):
    what every trial, worker, task and actor pays before its first step."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-c", "import torch, ray, ray.data, ray.train"],
            check=True,
            capture_output=True,
        )
        best = min(best, time.perf_counter() - started)
    return best


@dataclass(frozen=True)
class Overheads:
    """This machine's start-up (seconds) and how much Ray's helpers stretch compute."""

    start: float
    helper_factor: float

    @classmethod
    def here(cls, devices: int, device_type: str) -> Overheads:
        cores = devices if device_type == "cpu" else 0
        factor = cores / (cores - RAY_HELPER_CORES) if cores > RAY_HELPER_CORES else 1.0
        return cls(startup_probe(), factor)

    def starts(self, multiple: float) -> float:
        return multiple * self.start

    def record(self) -> dict:
        return {"start_seconds": self.start, "helper_factor": self.helper_factor}
