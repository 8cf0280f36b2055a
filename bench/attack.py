"""Attack throughput, and how the distributed evaluation scales with Ray actors.

    python bench/attack.py [--images 256] [--width 8] [--eval-images 16] [--skip-ray]
    python bench/attack.py --only-scaling [--scaling-images 256] [--ray-cpus 4]
    python bench/attack.py --device cuda --width 64 --eval-images 128   # on one GPU

Prints PGD-20 images/s on a fixed encrypted pipeline (adaptation network + ResNet18, BPDA
backward through the cipher) for lie_ray's ``PGD`` class and for a minimal hand-written PGD
loop on the same model; images/s of every evaluation at the ``paper`` preset's settings, with
the resulting time for the paper's whole test set per GPU-free (one-thread) actor; the largest
ciphertext-space L-inf change that plain-image perturbations of 0.1 produce; then the wall time
of the real evaluation (``run_evaluation``, three scenarios, every evaluation) with 1 and with 2
one-thread actors, start-up included. The last line is
``evaluation actors: 2 vs 1 speed-up S (machine: CPU, N cores)``. With ``--device cuda`` only
the per-evaluation images/s run, on the GPU, with the time for the paper's test set per GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lie_ray.attacks import PGD
from lie_ray.attacks.pipeline import Defender
from lie_ray.keys import generate_key, save_key
from lie_ray.keys.policies import FixedPolicy
from lie_ray.models import build_model
from lie_ray.models.device import configure, prepare_network
from lie_ray.transforms import TransformSpec

EPS, STEP, STEPS = 0.1, 0.01, 20


def hand_written_pgd(classifier, images, labels):
    adversarial = (images + torch.empty_like(images).uniform_(-EPS, EPS)).clamp(0, 1)
    for _ in range(STEPS):
        adversarial.requires_grad_(True)
        loss = F.cross_entropy(classifier(adversarial), labels)
        (grad,) = torch.autograd.grad(loss, adversarial)
        adversarial = adversarial.detach() + STEP * grad.sign()
        adversarial = torch.min(torch.max(adversarial, images - EPS), images + EPS).clamp(0, 1)
    return adversarial


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def single_process(args, defender) -> None:
    torch.set_num_threads(1)
    images = torch.rand(args.images, 3, 32, 32)
    labels = torch.randint(0, 10, (args.images,))
    ids = np.arange(args.images)
    classifier = defender.classifier(ids, "bpda-both")
    ours = timed(lambda: PGD(classifier, EPS, STEP, STEPS)(images, labels))
    hand = timed(lambda: hand_written_pgd(classifier, images, labels))
    print(f"PGD-{STEPS}, {args.images} images, width {args.width}, 1 thread")
    print(f"  lie_ray PGD class        {args.images / ours:8.1f} img/s")
    print(
        f"  hand-written PGD loop    {args.images / hand:8.1f} img/s   "
        f"(ours takes {100 * (ours / hand - 1):+.1f}% time)"
    )


def per_evaluation(args, defender) -> None:
    """Every evaluation at the paper preset's settings, one eps, one thread. Labels are the
    model's own clean predictions, so every image starts correctly classified and the attacks
    that stop early on fooled images (Square, AutoAttack) are timed doing their full work."""
    from lie_ray.attacks.outcome import Batch
    from lie_ray.evaluation.cascade import Row
    from lie_ray.evaluation.engine import Engine
    from lie_ray.evaluation.settings import EVAL_PRESETS

    torch.set_num_threads(1)
    settings = EVAL_PRESETS["paper"]
    device = torch.device(args.device)
    images = torch.rand(args.eval_images, 3, 32, 32, device=device)
    ids = np.arange(args.eval_images)
    batch = Batch(images, defender.predict(images, ids), ids)
    plain_model = prepare_network(build_model(False, width=args.width).eval(), device)
    # What the attacks prepare (PBA's stand-in, the recovered keys), built before the clock as
    # the actors do; a short fit on few images, since the stand-in's quality does not change
    # its attack's cost.
    own = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 3), dtype=np.uint8)
    engine = Engine(defender, settings.replace(pba_steps=8), own, plain_model)
    attacked = [e for e in settings.epsilons if e > 0]
    test_set, total = 10_000, 0.0
    print(
        f"every evaluation at the paper preset (PGD-{settings.pgd_steps}, "
        f"{settings.pgd_restarts} restarts, {settings.eot_keys} fresh EOT keys per step, "
        f"Square {settings.square_queries} queries, AutoAttack "
        f"{settings.autoattack}), eps {EPS}, {args.eval_images} images, width {args.width}, "
        + ("on " + torch.cuda.get_device_name() if device.type == "cuda" else "1 thread")
    )
    if device.type == "cuda":  # cuDNN picks its kernels on the first calls: not timed
        engine.run(engine.specs[0], batch, EPS, ids, {}, settings)
    done = {}  # what ran before at this epsilon, as in the evaluation (bpda reuses its run)
    for spec in engine.specs:
        ran = []
        seconds = timed(lambda: ran.append(engine.run(spec, batch, EPS, ids, done, settings)))
        outcome = ran[0]
        done[spec.name] = Row(spec.name, EPS, ids, outcome)
        rate = args.eval_images / seconds
        total += test_set * len(attacked) / rate
        print(f"  {spec.name:<18} {rate:8.2f} img/s" + ("  (reused)" if outcome.reused else ""))
    hours = total / 3600
    where = (
        "on this GPU"
        if device.type == "cuda"
        else f"per GPU-free actor "
        f"({hours / settings.actors:.1f} h with its {settings.actors} actors)"
    )
    print(
        f"  paper preset, whole test set ({test_set} images x {len(attacked)} epsilons): "
        f"{hours:.1f} h {where}"
    )


def ciphertext_change(defender) -> None:
    """Why encrypted-input bounds nothing: plain steps of at most 0.1 (25 of 255 levels) and
    the largest change they make to any ciphertext byte."""
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (256, 3, 32, 32), generator=generator)
    step = 25 * (2 * torch.randint(0, 2, levels.shape, generator=generator) - 1)
    plain, moved = levels.float() / 255, (levels + step).clamp(0, 255).float() / 255
    cipher = defender.key.transform("fixed")
    change = (cipher.encrypt(moved) - cipher.encrypt(plain)).abs().max().item()
    print(
        f"plain-space L-inf {(moved - plain).abs().max().item():.3f} (<= 0.1) moves the "
        f"ciphertext by up to L-inf {change:.3f} ({round(change * 255)}/255), 256 images"
    )


def write_runs(tmp: Path, width: int) -> tuple[Path, Path]:
    """What 'lie-ray train' leaves behind, for three scenarios (Plain, Encrypted with a fixed
    key, Encrypted with id-group keys) of untrained networks: checkpoints, a key file and
    ``training.parquet``. Returns (runs directory, key path)."""
    from lie_ray.scenarios import Scenario
    from lie_ray.training.settings import TrainSettings
    from lie_ray.training.untrained import write_runs as write_untrained

    key = generate_key()
    key_path = save_key(key, tmp / "key.json")
    write_untrained(
        tmp / "runs",
        [
            Scenario("Plain", False),
            Scenario("Encrypted", True, "fixed"),
            Scenario("Encrypted-Batch", True, "id-group"),
        ],
        key,
        TrainSettings(width=width, adaptation_channels=16, epochs=1),
    )
    return tmp / "runs", key_path


class ActorCpu:
    """CPU seconds of every evaluation actor process (start-up included), sampled while the run
    goes, since actors exit with their pool. On a shared machine wall times say little about
    scaling; whether the actors' work was balanced, and how much was serial, they show."""

    def __init__(self, exclude: set[int]):
        self.exclude = exclude  # an earlier pool's actors, which may still be exiting
        self.seconds: dict[int, float] = {}
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        import psutil

        ours = psutil.Process()  # this bench's Ray only: others may run the same actors
        while not self.done.wait(0.25):
            for process in ours.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if process.pid not in self.exclude and "EvaluateShard" in " ".join(
                        process.cmdline()
                    ):
                        times = process.cpu_times()
                        self.seconds[process.pid] = times.user + times.system

    def __enter__(self) -> ActorCpu:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.thread.join()


class Phases(logging.Handler):
    """When the evaluation's own log lines came (``lie_ray``'s, at INFO, held here rather than
    printed): the fits' end and each scenario's end split the wall into the serial fit phase,
    the actor pool and the driver's tail (saved images, tables, gallery), which is how much of
    a run more actors cannot shorten."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []
        self.logger = logging.getLogger("lie_ray")

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.perf_counter(), record.getMessage()))

    def __enter__(self) -> Phases:
        self.start = time.perf_counter()
        self.saved = self.logger.level, self.logger.propagate
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc) -> None:
        self.end = time.perf_counter()
        self.logger.removeHandler(self)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]

    def split(self) -> dict[str, float] | None:
        """Seconds before the fits, of the fits, of the pool and of the driver's tail (what
        the log lines allow; None where they are not there)."""
        fitting = next((t for t, m in self.lines if m.startswith("fitting the keyless")), None)
        evaluated = [t for t, m in self.lines if m.startswith("evaluated ")]
        if fitting is None or not evaluated:
            return None
        fitted = next(t for t, m in self.lines if t > fitting)  # the first fit summary
        return {
            "before the fits": fitting - self.start,
            "fits": fitted - fitting,
            "pool": evaluated[-1] - fitted,
            "driver's tail": self.end - evaluated[-1],
        }


def ceiling(parts: dict[int, dict[str, float]], cpu: dict[int, float]) -> str:
    """What two actors could reach on this machine for this run, from the 1-actor run's
    parts: everything but the pool is the same work whatever the pool's size, and the pool's
    work costs ``contention`` more CPU seconds when two actors share the cores (measured in
    this run: the actors' CPU seconds with 2 over those with 1)."""
    one = parts[1]
    serial = one["before the fits"] + one["fits"] + one["driver's tail"]
    contention = cpu[2] / cpu[1]
    best = (serial + one["pool"]) / (serial + one["pool"] * contention / 2)
    return (
        f"  ceiling: {best:.2f}x (serial parts {serial:.1f} s, the same for any pool; the 1-actor "
        f"pool {one['pool']:.1f} s; two actors' CPU {contention:.2f}x one's for the same work)"
    )


def ray_scaling(args) -> float:
    """The real evaluation path (``run_evaluation``: every evaluation of three scenarios, test
    and train splits, tables and gallery) with actor pools of 1 and 2, one thread each, on one
    embedded Ray; wall time includes the actors' start-up. Returns the 2-vs-1 speed-up."""

    import ray
    import ray.data

    from lie_ray.data.cifar import DEFAULT_DATA_DIR
    from lie_ray.evaluation.run import run_evaluation
    from lie_ray.evaluation.settings import EvalSettings

    for name in ("lie_ray", "ray.data"):  # the figures below are the output
        logging.getLogger(name).setLevel(logging.WARNING)
    torch.set_num_threads(1)  # the driver's own work (gallery) stays on one core
    data = os.environ.get("LIE_RAY_DATA", DEFAULT_DATA_DIR)
    settings = EvalSettings(
        epsilons=(0.0, 8 / 255, EPS),
        pgd_steps=5,
        eot_keys=2,
        square_queries=20,
        autoattack="light",
        autoattack_steps=3,
        # the keyless fits run in the timed evaluation, once per scenario in Ray tasks
        attacker_images=128,
        pba_steps=60,
        key_search_budget=100,
        rand_steps=5,
        rand_draws=4,
        test_limit=args.scaling_images,
        batch_size=32,
        torch_threads=1,
    )
    seconds, earlier, parts, cpu_total = {}, {}, {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        runs, key_path = write_runs(Path(tmp), args.width)
        ray.init(
            address="local", num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        print(
            f"evaluation (run_evaluation) of 3 scenarios, {args.scaling_images} test images "
            f"at eps {', '.join(f'{e:.3f}' for e in settings.epsilons)} + the train split's "
            f"clean error, {args.ray_cpus} Ray CPUs, 1 thread per actor"
        )
        for actors in (1, 2):
            out = Path(tmp, f"out-{actors}")
            driver = time.process_time()
            with ActorCpu(exclude=set(earlier)) as cpu, Phases() as phases:
                seconds[actors] = timed(
                    lambda: run_evaluation(
                        runs, data, out, key_path, settings.replace(actors=actors)
                    )
                )
            print(
                f"  {actors} actor(s)  {seconds[actors]:6.1f} s wall (incl. actor start-up);"
                f" CPU s: actors {', '.join(f'{c:.1f}' for c in cpu.seconds.values())}, "
                f"driver {time.process_time() - driver:.1f}"
            )
            parts[actors], cpu_total[actors] = phases.split(), sum(cpu.seconds.values())
            if parts[actors]:
                print("    " + ", ".join(f"{k} {v:.1f} s" for k, v in parts[actors].items()))
            earlier.update(cpu.seconds)
        ray.shutdown()
    if parts[1] and parts[2]:
        print(ceiling(parts, cpu_total))
    return seconds[1] / seconds[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument(
        "--eval-images",
        type=int,
        default=16,
        help="images per evaluation in the per-evaluation timing",
    )
    parser.add_argument("--skip-ray", action="store_true", help="skip the actor scaling part")
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cuda: only the per-evaluation images/s, on the GPU",
    )
    parser.add_argument(
        "--only-scaling", action="store_true", help="run only the actor scaling part"
    )
    parser.add_argument(
        "--scaling-images",
        type=int,
        default=256,
        help="test images per scenario in the actor scaling part",
    )
    parser.add_argument(
        "--ray-cpus",
        type=int,
        default=4,
        help="logical CPUs of the embedded Ray in the actor scaling part",
    )
    args = parser.parse_args()
    if args.only_scaling:
        speed_up = ray_scaling(args)
        print(f"evaluation actors: 2 vs 1 speed-up {speed_up:.2f} ({machine_line()})")
        return
    torch.manual_seed(0)
    model = build_model(True, width=args.width, adaptation_channels=16).eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    defender = Defender(model, TransformSpec().keyed(generate_key()), FixedPolicy())
    if args.device == "cuda":
        configure(torch.device("cuda"))
        defender.model = prepare_network(defender.model, torch.device("cuda"))
        per_evaluation(args, defender)
        print(f"({machine_line()}, {torch.cuda.get_device_name()})")
        return
    single_process(args, defender)
    ciphertext_change(defender)
    per_evaluation(args, defender)
    if not args.skip_ray:
        speed_up = ray_scaling(args)
        print(f"evaluation actors: 2 vs 1 speed-up {speed_up:.2f} ({machine_line()})")


def machine_line() -> str:
    from lie_ray.infra import provenance

    machine = provenance.machine()
    return f"machine: {machine['cpu']}, {machine['cores']} cores"


if __name__ == "__main__":
    main()
