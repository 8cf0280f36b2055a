"""The whole study in one command: ``python -m lie_ray.sweep`` (or ``lie-ray sweep``).

    keys -> encryption (Ray Data) -> the scenarios trained (Tune + Train) -> distributed
    evaluation (Ray Data actors) -> report

Everything lands under ``--out``, unless ``--storage`` names a place every node of a cluster
reaches (a path, or a URI such as ``s3://bucket/prefix?region=us-east-1``): what cluster nodes
write then goes there (``STORAGE/encrypted``, ``STORAGE/train``, ``STORAGE/runs``,
``STORAGE/evaluations``) and only what this driver writes stays in ``--out``:

    OUT/keys/master.json     the master key, when the sweep made it (mode 0600)
    OUT/encrypted/           the encrypted dataset as Parquet shards, with preview.png
    OUT/ray/                 Tune experiment (TensorBoard) and Ray Train checkpoints
    OUT/training.parquet     one row per scenario
    OUT/cluster.parquet      the cluster over time: alive nodes, CPUs and GPUs total and in use
    OUT/evaluations/         one Parquet file per evaluated scenario (what --resume reuses)
    OUT/examples.parquet, OUT/results.parquet, OUT/report.md, OUT/*.png
    OUT/logs/sweep.log       the driver's whole log (the console is quiet unless --verbose)
    OUT/logs/console.log     what else reached the driver's stdout and stderr (Ray's own lines)
    OUT/logs/ray/            the embedded Ray's session logs: workers', actors', trials' output

On a laptop the sweep starts an embedded Ray and stops it at the end; with ``RAY_ADDRESS`` set,
or under ``ray job submit``, it joins that cluster. ``--resume`` after an interruption keeps
what is finished: the encrypted shards, finished Tune trials (``Tuner.restore``), and every
scenario whose evaluation file matches its checkpoint and settings.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from lie_ray.app.calibration import Calibration, read_calibration, scale_of
from lie_ray.attacks.spec import WORST_CASE_NAMES
from lie_ray.data.cifar import check_dataset
from lie_ray.evaluation.settings import EvalSettings, headline_epsilon
from lie_ray.infra import atomic, provenance, storage
from lie_ray.infra.cluster_log import ClusterRecorder
from lie_ray.keys import Key, generate_key, key_location, load_key, save_key
from lie_ray.privacy.settings import PrivacySettings
from lie_ray.report.catalogue import Catalogue
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import TrainSettings

log = logging.getLogger("lie_ray")
PHASES = ("keys", "encryption", "training", "evaluation", "privacy", "report")


@dataclass(frozen=True)
class SweepRequest:
    """What the user asked the sweep for, as given: ``resolve_plan`` checks it."""

    out: Path
    data: Path
    preset: str
    scenarios: str | None = None  # comma-separated names; None: the preset's
    scenario_files: list[Path] | None = None  # TOML files of extra scenario records
    key: str | None = None  # a file or URI; None: the sweep makes its own
    resume: bool = False
    storage: str | None = None
    download: bool = False
    # The transforms the privacy phase attacks: None every one, () none (--no-privacy).
    privacy: tuple[str, ...] | None = None
    train_overrides: Mapping[str, Any] = field(default_factory=dict)  # TrainSettings.replace
    eval_overrides: Mapping[str, Any] = field(default_factory=dict)  # EvalSettings.replace
    calibration: Path | None = None  # an earlier sweep's --out on this machine


@dataclass(frozen=True)
class SweepPlan:
    """What one sweep runs: validated before any Ray work starts."""

    out: Path
    data: Path
    scenarios: list[Scenario]
    train: TrainSettings
    evaluation: EvalSettings
    key_path: str | None = None  # a file or URI; None: the sweep's own key in OUT/keys/
    resume: bool = False
    storage: str | None = None  # what nodes write (URI or path); default OUT (Ray's in OUT/ray)
    privacy: PrivacySettings | None = None  # None: --no-privacy, the phase is skipped
    privacy_transforms: tuple[str, ...] = ()  # what the privacy phase attacks; () iff skipped
    preset: str = ""  # the name the settings came from, for timings.json
    calibration: Calibration | None = None  # scales the prediction (lie_ray.app.calibration)

    def shared(self, *parts: str) -> str:
        """Where cluster nodes write ``parts``: under ``--storage``, else under ``--out``."""
        return storage.join(self.storage or self.out.resolve(), *parts)


def run_sweep(plan: SweepPlan, predicted=None) -> dict[str, pa.Table]:
    """Run every phase in order; return the training and results tables. ``predicted``: the
    sweep's ``predict(plan)``, made before Ray started (else here, while Ray's own processes
    may still be starting, and the probes time them too)."""
    from lie_ray.encryption.run import run_encrypt
    from lie_ray.evaluation.run import run_evaluation
    from lie_ray.infra.console import log_to_file
    from lie_ray.infra.session import wants_gpu
    from lie_ray.keys.policies import PolicySpec
    from lie_ray.report import write_report
    from lie_ray.training.capacity import concurrent_trials
    from lie_ray.training.run import run_training

    out = plan.out.resolve()
    log_to_file(out / "logs" / "sweep.log")  # the console stays quiet; this file does not
    # A cluster that cannot hold one training trial fails now, not after encrypting.
    concurrent_trials(
        plan.train, wants_gpu(plan.train.gpu), len(plan.scenarios), plan.train.max_concurrent_trials
    )
    predicted = predicted or predict(plan)  # the bill, before it is paid: beside the measured
    announce(predicted, plan)
    measured: dict[str, float] = {}
    recorder = ClusterRecorder().start()
    phase = functools.partial(timed_phase, measured=measured)
    with phase("keys", recorder):
        key_path, key = prepare_key(plan, out)
    with phase("encryption", recorder):
        encrypted = plan.shared("encrypted")
        if plan.resume and encryption_done(encrypted, key, plan.train.train_limit):
            log.info("encrypted shards in %s are complete: not encrypted again", encrypted)
        else:
            run_encrypt(
                plan.data,
                key_path,
                PolicySpec("fixed", plan.train.key_batch_size),
                encrypted,
                limit=plan.train.train_limit,
                preview=out / "encrypted" / "preview.png",
            )
    with phase("training", recorder):
        training = run_training(
            plan.scenarios,
            plan.train,
            plan.data,
            out,
            key_path,
            resume=plan.resume,
            storage=plan.storage,
        )
    with phase("evaluation", recorder):
        results = run_evaluation(
            out,
            plan.data,
            out,
            key_path,
            plan.evaluation,
            [s.name for s in plan.scenarios],
            resume=plan.resume,
            gpu=plan.train.gpu,
            parts=plan.shared("evaluations"),
        )
    if plan.privacy is not None:
        with phase("privacy", recorder):
            from lie_ray.privacy.run import run_privacy
            from lie_ray.report import write_privacy

            transforms = list(plan.privacy_transforms)
            run_privacy(plan.data, key, out, transforms, plan.privacy, plan.storage)
            write_privacy(out)  # privacy.md, from the table the job wrote
    recorder.stop()
    atomic.write_parquet(recorder.table(), out / "cluster.parquet")
    write_timings(plan, predicted, measured, out)
    with phase("report"):
        write_report(out, training)
    return {"training": training, "results": results}


def predict(plan: SweepPlan):
    """``--estimate``'s figures for this sweep (a probe of a few seconds, in this driver)."""
    from lie_ray.app.estimate import for_run

    return for_run(
        plan.scenarios,
        plan.train,
        plan.evaluation,
        plan.data,
        calibration=plan.calibration,
        sweep=True,
        privacy_transforms=len(plan.privacy_transforms),  # () when the phase is skipped
    )


def announce(predicted, plan: SweepPlan) -> None:
    """The prediction's line, in the console and the sweep's log."""
    from lie_ray.app.estimate import duration

    log.info(
        "predicted (--estimate, probed here; %s): %s",
        plan.calibration.describe() if plan.calibration else "uncalibrated",
        ", ".join(
            f"{e.name} {duration(e.seconds)} ({duration(e.low)} - {duration(e.high)})"
            for e in predicted.expected
        ),
    )


def write_timings(plan: SweepPlan, predicted, measured: dict[str, float], out: Path) -> None:
    """OUT/timings.json: each phase's wall seconds as measured and as predicted before it
    ran, and the evaluation's cost by the same model for the work it really did (the
    cascade skips what is broken: only the run knows how much)."""
    import pyarrow.parquet as pq

    from lie_ray.app.estimate import work_done
    from lie_ray.data.cifar import load_split

    path = out / "examples.parquet"
    columns = ["scenario", "evaluation", "epsilon", "attacked", "reused"]
    examples = pq.read_table(path, columns=[c for c in columns if c in pq.read_schema(path).names])
    tests = len(load_split(plan.data, "test", limit=plan.evaluation.test_limit).labels)
    trains = len(load_split(plan.data, "train").labels)
    done = work_done(
        examples,
        plan.evaluation,
        plan.scenarios,
        tests,
        trains,
        predicted.seconds,
        scale_of(plan.calibration, "evaluation"),
    )
    record = {
        "predicted": predicted.record(),
        "measured_seconds": measured,
        "evaluation_work_done": {
            "device_seconds": done,
            "wall_seconds": done / max(1, min(plan.evaluation.actors, predicted.devices)),
        },
        "resumed": plan.resume,
        "machine": provenance.machine(),
        "preset": plan.preset,
    }
    atomic.write_bytes(out / "timings.json", json.dumps(record, indent=1).encode())


def tensorboard_dir(plan: SweepPlan) -> str:
    return storage.join(plan.storage or plan.out.resolve() / "ray", "train")


@contextmanager
def timed_phase(
    name: str, recorder: ClusterRecorder | None = None, measured: dict[str, float] | None = None
) -> Iterator[None]:
    """A line when a phase ends, with its wall time (kept in ``measured``), and one in the
    log when it starts (each phase's own first line says what it starts on the console); the
    cluster recorder labels its samples with the phase (and stops if the phase fails)."""
    number = PHASES.index(name) + 1
    log.debug("[%d/%d] %s ...", number, len(PHASES), name)
    started = time.monotonic()
    if recorder is not None:
        recorder.phase = name
    try:
        yield
    except BaseException:
        if recorder is not None:
            recorder.stop()
        raise
    seconds = time.monotonic() - started
    if measured is not None:
        measured[name] = seconds
    log.info("[%d/%d] %s done in %.1f s", number, len(PHASES), name, seconds)


def prepare_key(plan: SweepPlan, out: Path) -> tuple[str | Path, Key]:
    """The user's key (validated: readable by its owner only, the right block size), else the
    sweep's own, made once into OUT/keys/ and reused by every later run into the same OUT."""
    if plan.key_path is not None:
        return (
            key_location(plan.key_path),
            load_key(plan.key_path, block_size=plan.train.block_size),
        )
    path = out / "keys" / "master.json"
    if path.exists():
        key = load_key(path, block_size=plan.train.block_size)
        log.info("using the sweep's key %s (%s)", key.fingerprint, path)
        return path, key
    key = generate_key(plan.train.block_size)
    save_key(key, path)
    log.info("made a new master key %s at %s (mode 0600)", key.fingerprint, path)
    return path, key


def encryption_done(directory: str, key: Key, limit: int | None) -> bool:
    """True when the encryption phase finished for this key: its manifest is written last."""
    try:
        written = json.loads(storage.read_bytes(storage.join(directory, "manifest.json")))
    except (OSError, ValueError):
        return False
    return written.get("master_fingerprint") == key.fingerprint and written.get("limit") == limit


def summary(training: pa.Table, results: pa.Table, out: Path, tensorboard: str) -> str:
    """The headline per scenario, every figure from results.parquet with its n (the same
    numbers and labels as report.md): clean errors, the paper's PGD and the worst cases at the
    headline epsilon (the report's); then where everything is."""
    rows = results.to_pylist()
    catalogue = Catalogue.of_record(provenance.record_of(results.schema))
    epsilon = headline_epsilon(
        r["epsilon"] for r in rows if catalogue.is_adversarial(r["evaluation"])
    )
    found = {
        (r["scenario"], r["evaluation"]): r
        for r in rows
        if abs(r["epsilon"] - epsilon) <= 1e-6 or r["evaluation"] in ("train", "test")
    }
    protocol = catalogue.protocol()
    n = {
        e: sorted({r["n"] for (_, name), r in found.items() if name == e})
        for e in ("train", "test", protocol)
    }
    columns = ("train", "test", protocol, *WORST_CASE_NAMES)
    titles = ("train", "test", protocol, "keyless", "leaked", "worst", "channel")
    widths = [max(6, len(title)) for title in titles]
    lines = [f"{'scenario':<18} " + " ".join(f"{t:>{w}}" for t, w in zip(titles, widths))]
    for row in training.to_pylist():
        name = row["scenario"]
        cells = [_cell(found.get((name, e))) for e in columns]
        lines.append(f"{name:<18} " + " ".join(f"{c:>{w}}" for c, w in zip(cells, widths)))
    lines += [
        f"(results.parquet: clean train error n={_sizes(n['train'])}, clean test error "
        f"n={_sizes(n['test'])}; adversarial errors at eps {epsilon:.4f}, "
        f"n={_sizes(n[protocol])}: pgd = the paper's protocol; worst cases over plain-image "
        "attacks: keyless = the weights but no key and no leaked pair (the headline of a "
        "key-based defence), leaked = with leaked plain/encrypted pairs too, worst = with "
        "the key; channel = with the ciphertext-space attack too)",
        "",
        f"report      {out / 'report.md'}",
        f"tables      {out / 'training.parquet'}, {out / 'results.parquet'}, "
        f"{out / 'examples.parquet'}",
        f"tensorboard tensorboard --logdir {tensorboard}",
    ]
    return "\n".join(lines)


def _sizes(sizes: list[int]) -> str:
    return "?" if not sizes else "/".join(str(s) for s in sizes)


def _cell(row: dict | None) -> str:
    return "-" if row is None else f"{row['error']:.3f}"


def resolve_plan(request: SweepRequest) -> SweepPlan:
    """Every check that can fail on the user's input, before Ray starts."""
    from lie_ray.evaluation.settings import get_eval_preset
    from lie_ray.infra.storage import check_uri
    from lie_ray.infra.storage import is_uri as storage_is_uri
    from lie_ray.privacy import targets
    from lie_ray.privacy.settings import get_privacy_preset
    from lie_ray.scenarios import key_for_scenarios
    from lie_ray.training.settings import training_plan

    key = request.key
    privacy = tuple(targets.chosen(None)) if request.privacy is None else request.privacy
    train, chosen = training_plan(
        request.preset, request.scenarios, request.scenario_files, dict(request.train_overrides)
    )
    evaluation = get_eval_preset(request.preset).replace(**request.eval_overrides)
    if key is not None:
        if storage_is_uri(key):
            check_uri(key, "--key")
        loaded = key_for_scenarios(chosen, key, train.block_size, train.key_batch_size)
        if privacy and loaded is not None:
            loaded.require_master(
                f"the privacy phase derives many keys from --key {key}",
                fix="pass a key made by 'lie-ray keygen', or add --no-privacy",
            )
    storage = check_uri(request.storage) if request.storage is not None else None
    calibration = read_calibration(request.calibration) if request.calibration is not None else None
    return SweepPlan(
        out=request.out,
        data=check_dataset(request.data, request.download),
        scenarios=chosen,
        train=train,
        evaluation=evaluation,
        key_path=key,
        resume=request.resume,
        storage=storage,
        privacy=get_privacy_preset(request.preset, train.block_size) if privacy else None,
        privacy_transforms=privacy,
        preset=request.preset,
        calibration=calibration,
    )
