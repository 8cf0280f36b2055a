"""Ray's overhead on training: the product's Ray Train path against a bare PyTorch loop.

    python bench/train.py [--width 8] [--epochs 6] [--warmup 1] [--data DIR] [--layouts 1x2,2x1]
    python bench/train.py --device cuda --width 64 [--epochs 3]     # on one GPU (bench/gpu.sh)

The bare loop runs lie_ray's own ``train_epoch`` and ``count_errors`` (the same model,
optimiser, augmentation, batch size and test pass) on in-memory arrays, in one process with 2
intra-op threads. The Ray figures come from ``lie_ray.training.run.run_training``, exactly as
``lie-ray train`` runs it (embedded Ray with its dashboard, a Tune trial, a Ray Train run, Ray
Data feeding the workers), for one 2-thread worker (1x2) and two 1-thread workers (2x1). The
first epoch warms up; the others are timed, inside the workers, from the start of the training
pass to the end of the test pass (the checkpoint is not counted), and their median compared.

While the timed epochs run, a sampler in this process reads the CPU time of every process on
the machine twice a second (psutil); the table shows, per kind of process, the cores it used on
average over the timed epochs: what Ray costs besides the training itself. Target: Ray's epoch
time at most 1.05x the bare loop's.

The control column (on unless ``--no-control``) runs the bare loop again beside a synthetic
load as large as Ray's helpers measured in this run: 20 processes that each wake every 10 ms and
spin for their share, as Ray's idle daemons and actors do. If the bare loop beside that load is
as slow as Ray's epoch, Ray's cost is its helpers' CPU share and nothing in the Train worker.
With ``--device cuda`` both run on the GPU (bfloat16 autocast, as ``lie-ray train`` does there):
the bare loop, then one Ray Train worker holding the GPU; there is no control column.
The last line is read by scripts:

    ray/bare epoch time: 1x2 threads R1, 2x1 threads R2; bare beside Ray's load R3 (machine: ...)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import psutil
import torch

from lie_ray.data.cifar import DEFAULT_DATA_DIR, Split, load_split
from lie_ray.infra import provenance
from lie_ray.infra.session import ray_session
from lie_ray.models import build_model
from lie_ray.models.device import configure, prepare_network
from lie_ray.scenarios import PAPER_SCENARIOS
from lie_ray.training.augment import random_crop_flip
from lie_ray.training.run import run_training
from lie_ray.training.settings import get_preset
from lie_ray.training.worker import count_errors, train_epoch

TRAINING = "training (bare loop / Train workers)"
OTHERS = "outside this Ray (other programs)"
LOAD = "synthetic load (the control's)"


class InMemoryShard:
    """Stands in for a Ray Data shard: batches of in-memory arrays, reshuffled every epoch,
    optionally cropped and flipped, in the batch format ``train_epoch`` expects."""

    def __init__(self, split: Split, augment: bool, seed: int = 0):
        self.split, self.augment, self.rng = split, augment, np.random.default_rng(seed)

    def iter_batches(self, batch_size: int, **_):
        order = self.rng.permutation(len(self.split.labels))
        for first in range(0, len(order), batch_size):
            rows = order[first : first + batch_size]
            images = self.split.images[rows]
            if self.augment:
                images = random_crop_flip(images, self.rng)
            yield {"id": self.split.ids[rows], "image": images, "label": self.split.labels[rows]}


class CpuSampler:
    """Every process's CPU time, sampled twice a second in a background thread, so that the
    cores each kind of process used over any window of the run can be read off afterwards."""

    def __init__(self, period: float = 0.5):
        self.period, self.samples = period, []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> CpuSampler:
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.stopped.set()
        self.thread.join()

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), snapshot()))
            if self.stopped.wait(self.period):
                self.samples.append((time.time(), snapshot()))
                return

    def cores(self, start: float, end: float) -> dict[str, float]:
        """Cores used on average between ``start`` and ``end`` (unix seconds), per kind."""
        while self.samples[-1][0] < end:  # wait for the sample that closes the window
            time.sleep(self.period / 4)
        before = max((s for s in self.samples if s[0] <= start), key=lambda s: s[0])
        after = min((s for s in self.samples if s[0] >= end), key=lambda s: s[0])
        seconds, used = after[0] - before[0], defaultdict(float)
        for pid, (kind, cpu) in after[1].items():
            used[kind] += (cpu - before[1].get(pid, (kind, 0.0))[1]) / seconds
        return dict(used)


def snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds of every process on the machine. This bench's own Ray is its descendants
    (the embedded Ray's daemons are its children, and their workers theirs); anything else,
    another Ray on the same host included, counts as other programs."""
    ours = {p.pid for p in psutil.Process().children(recursive=True)} | {os.getpid()}
    processes = {}
    for process in psutil.process_iter():  # cached: cmdlines are read once per process
        try:
            times = process.cpu_times()
            kind = _KINDS.get(process.pid) or kind_of(process) if process.pid in ours else OTHERS
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if kind != OTHERS and not kind.startswith("ray::IDLE"):
            _KINDS[process.pid] = kind  # an idle worker may yet take a task and a new title
        processes[process.pid] = (kind, times.user + times.system)
    return processes


_KINDS: dict[int, str] = {}
_LOAD_PIDS: set[int] = set()  # the control's load processes


def kind_of(process: psutil.Process) -> str:
    """A readable kind: Ray worker processes by their title (``ray::TrainController``),
    Ray's daemons by name, and this driver."""
    if process.pid == os.getpid():
        return "driver (Tune loop, this bench)"
    cmdline = " ".join(process.cmdline() or [process.name()])
    if process.pid in _LOAD_PIDS:
        return LOAD
    if cmdline.startswith("ray::"):
        title = cmdline[5:].split()[0] if cmdline[5:].strip() else "?"
        if title.startswith("RayTrainWorker"):
            return TRAINING
        return "ray::" + title.split(".")[0][:40]
    if "default_worker.py" in cmdline or "setup_worker.py" in cmdline:
        return "ray::IDLE (starting)"  # its title comes once it has started
    for needle, kind in (
        ("raylet", "raylet"),
        ("gcs_server", "GCS"),
        ("dashboard/agent.py", "dashboard agent"),
        ("dashboard.py", "dashboard"),
        ("log_monitor", "log monitor"),
        ("runtime_env/agent", "runtime env agent"),
        ("monitor.py", "autoscaler monitor"),
    ):
        if needle in cmdline:
            return kind
    return "other Ray process: " + cmdline[:30]


def bare_epochs(args, settings, sampler: CpuSampler) -> tuple[float, dict, float]:
    """The median of the timed epochs' seconds and the cores used over them, in one 2-thread
    process."""
    torch.set_num_threads(2)
    torch.manual_seed(0)
    train = InMemoryShard(load_split(args.data, "train"), augment=True)
    test = InMemoryShard(load_split(args.data, "test"), augment=False)
    model = build_model(False, width=settings.width)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    device, plain = torch.device(args.device), PAPER_SCENARIOS["Plain"]
    configure(device)
    model = prepare_network(model, device)  # as the Train worker does (channels-last on GPUs)
    epochs = []
    for epoch in range(settings.epochs):
        start_wall, start = time.time(), time.perf_counter()
        train_epoch(model, optimizer, plain, None, train, settings.batch_size, device, epoch)
        count_errors(model, test, settings.batch_size, device)  # its counts end the epoch
        epochs.append((start_wall, time.perf_counter() - start))
    return summarise(epochs[args.warmup :], sampler, relabel_driver)


def spin(share: float, period: float, stop) -> None:
    """One process of the control's load: it wakes every ``period`` seconds and spins until its
    CPU time (its wake-ups' cost included) is ``share`` of the wall time since it started."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    while not stop.wait(period):
        owed = share * (time.perf_counter() - start_wall)
        while time.process_time() - start_cpu < owed:
            pass


def bare_beside_load(
    args, settings, sampler: CpuSampler, cores: float
) -> tuple[float, dict, float]:
    """The bare loop again, while 20 processes use ``cores`` between them in 10 ms bursts."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    load = [
        context.Process(target=spin, args=(cores / 20, 0.01, stop), daemon=True) for _ in range(20)
    ]
    for process in load:
        process.start()
        _LOAD_PIDS.add(process.pid)
    try:
        return bare_epochs(args, settings, sampler)
    finally:
        stop.set()
        for process in load:
            process.join(timeout=10)


def summarise(
    epochs: list[tuple[float, float]], sampler: CpuSampler, relabel=None
) -> tuple[float, dict, float]:
    """(median epoch seconds, cores used per kind over the timed epochs' whole span, the
    training's CPU seconds per epoch over that span)."""
    start, end = epochs[0][0], epochs[-1][0] + epochs[-1][1]
    cores = sampler.cores(start, end)
    cores = relabel(cores) if relabel else cores
    return (
        float(np.median([seconds for _, seconds in epochs])),
        cores,
        cores.get(TRAINING, 0.0) * (end - start) / len(epochs),
    )


def relabel_driver(cores: dict[str, float]) -> dict[str, float]:
    """In the bare run this process IS the training."""
    cores[TRAINING] = cores.pop("driver (Tune loop, this bench)", 0.0)
    return cores


def ray_epochs(args, settings, workers: int, sampler: CpuSampler) -> tuple[float, dict, float]:
    """The median of the timed epochs' seconds (rank 0's figures, after gradients and counts
    of every rank are in) and the cores used over them, through ``lie-ray train``'s own code."""
    layout = (
        settings.replace(num_workers=1, gpu="yes")
        if args.device == "cuda"
        else settings.replace(num_workers=workers, torch_threads=2 // workers)
    )
    with tempfile.TemporaryDirectory(prefix="lie_ray_bench_") as out:
        run_training([PAPER_SCENARIOS["Plain"]], layout, args.data, out, None)
        results = next(Path(out, "ray", "train").glob("*/result.json"))
        reports = [json.loads(line) for line in results.read_text().splitlines()]
    epochs = [(r["epoch_started_at"], r["epoch_seconds"]) for r in reports]
    return summarise(epochs[args.warmup :], sampler)


def ray_overhead(cores: dict[str, float]) -> float:
    """Cores used by this bench's Ray besides the training (and besides the control's load)."""
    return sum(v for k, v in cores.items() if k not in (TRAINING, OTHERS, LOAD))


def print_table(columns: dict[str, tuple[float, dict]]) -> None:
    kinds = sorted(
        {k for _, cores, _ in columns.values() for k in cores},
        key=lambda k: (k != TRAINING, -max(c.get(k, 0) for _, c, _ in columns.values())),
    )
    print(
        "\ncores used during the timed epochs (CPU seconds per wall second; "
        f"{os.cpu_count()} cores here)"
    )
    print(f"  {'process':44s}" + "".join(f"{name:>10s}" for name in columns))
    for kind in kinds:
        values = [cores.get(kind, 0.0) for _, cores, _ in columns.values()]
        if kind != TRAINING and max(values) < 0.005:
            continue
        print(f"  {kind:44s}" + "".join(f"{v:10.3f}" for v in values))
    overhead = [ray_overhead(cores) for _, cores, _ in columns.values()]
    print(f"  {'all of Ray but the training':44s}" + "".join(f"{v:10.3f}" for v in overhead))
    print(
        f"  {'epoch seconds (median)':44s}" + "".join(f"{s:10.2f}" for s, _, _ in columns.values())
    )
    print(
        f"  {'training CPU seconds per epoch':44s}"
        + "".join(f"{w:10.2f}" for _, _, w in columns.values())
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DATA_DIR)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="epochs not timed; the median "
        "of the rest is (one epoch varied by 20%% from run to run here)",
    )
    parser.add_argument(
        "--layouts",
        default="1x2,2x1",
        help="Ray Train layouts, workers x threads (2 threads in all)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: the bare loop and one Ray Train worker on the GPU",
    )
    parser.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the bare loop beside a load as large as Ray's helpers",
    )
    args = parser.parse_args()
    layouts = [int(layout.split("x")[0]) for layout in args.layouts.split(",")]
    if args.device == "cuda":
        layouts, args.control = [1], False
    settings = get_preset("smoke").replace(
        width=args.width, batch_size=args.batch, epochs=args.epochs, max_concurrent_trials=1
    )
    columns = {}
    with CpuSampler() as sampler:
        columns["bare"] = bare_epochs(args, settings, sampler)
        with ray_session():
            for workers in layouts:
                name = "ray 1 GPU" if args.device == "cuda" else f"ray {workers}x{2 // workers}"
                columns[name] = ray_epochs(args, settings, workers, sampler)
        helpers = float(
            np.mean(
                [ray_overhead(cores) for name, (_, cores, _) in columns.items() if name != "bare"]
            )
        )
        if args.control:
            columns["bare+load"] = bare_beside_load(args, settings, sampler, helpers)
    print(
        f"\nan epoch of Plain (train {settings.train_limit or 'all'} images + test pass), "
        f"ResNet18 width {args.width}, batch {args.batch}: the median of "
        f"{args.epochs - args.warmup} after {args.warmup} warm-up epoch(s)"
    )
    print_table(columns)
    bare = columns["bare"][0]
    ratios = {
        name: seconds / bare for name, (seconds, _, _) in columns.items() if name.startswith("ray")
    }
    control = (
        f"; bare beside Ray's load ({helpers:.2f} cores) {columns['bare+load'][0] / bare:.2f}"
        if args.control
        else ""
    )
    machine = provenance.machine()
    print(
        "\n"
        + "ray/bare epoch time: "
        + ", ".join(
            f"{name[4:]}{'' if 'GPU' in name else ' threads'} {ratio:.2f}"
            for name, ratio in ratios.items()
        )
        + control
        + f" (machine: {machine['cpu']}, {machine['cores']} cores{gpu_name(args.device)}, "
        f"bare epoch {bare:.2f} s)"
    )


def gpu_name(device: str) -> str:
    return f", {torch.cuda.get_device_name()}" if device == "cuda" else ""


if __name__ == "__main__":
    main()
