"""``lie-ray``: one subcommand per job.

User mistakes (a ``LieRayError``, or a usage error click finds: an option out of range, a
typo) print one line, ``error: ...``, and exit with status 2; no traceback. Ctrl-C or SIGTERM
prints one line saying what is kept and exits with 130 or 143 (``lie_ray.infra.interrupt``).
Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import typer

from lie_ray.app.options import EVALUATION, TRAINING, Given, takes
from lie_ray.errors import LieRayError
from lie_ray.infra.console import quiet_console
from lie_ray.infra.interrupt import Interrupted, on_interrupt
from lie_ray.infra.outputs import check_output_dir, check_output_file, check_storage

app = typer.Typer(
    name="lie-ray",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Adversarial tests of learnable image encryption (Tanaka's block cipher), on Ray.",
)

EXIT_USER_ERROR = 2


def user_errors(command: Callable) -> Callable:
    """Turn a LieRayError into a one-line message and exit status 2, and an interruption into
    one line and exit status 128 + the signal number."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LieRayError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
        except (Interrupted, KeyboardInterrupt) as err:
            if not isinstance(err, Interrupted):  # outside a job's Ray work: nothing started
                err = Interrupted(
                    signal.SIGINT,
                    "interrupted by SIGINT: stopped; files are "
                    "written whole or not at all, so run the command again",
                )
            typer.echo(str(err), err=True)
            raise typer.Exit(err.exit_status) from None

    return wrapper


@app.callback()
def main_options(
    verbose: bool = typer.Option(
        False,
        "--verbose",
        "-v",
        help="Debug logging, and everything Ray and its workers print, on the console (a sweep "
        "keeps it under OUT/logs otherwise).",
    ),
):
    configure_logging(verbose)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(message)s",
        force=True,
    )


@contextlib.contextmanager
def quiet_ray_work(out: Path, num_cpus: int | None = None, resumable: bool = True):
    """A command's Ray work, the same for every command that writes to ``out``: its console
    quiet (``lie_ray.infra.console``), an embedded Ray's session logs kept in ``OUT/logs/ray``,
    and a signal ending it in one line. The console is quieted first, so the Ray processes
    started inside inherit its file."""
    from lie_ray.infra.session import ray_session

    logs = out.resolve() / "logs"
    with (
        quiet_console(logs),
        ray_session(num_cpus=num_cpus, keep_logs=logs),
        on_interrupt(out, resumable),
    ):
        yield


@app.command()
@user_errors
def keygen(
    out: Path = typer.Option(..., "--out", help="Where to write the key file (mode 0600)."),
    block_size: int = typer.Option(4, "--block-size", "-M", help="Block size M of the cipher."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key file."),
):
    """Write a new master key (256 bits from the OS CSPRNG); prints its fingerprint."""
    from lie_ray.keys import check_block_size, generate_key, save_key

    check_block_size(block_size)
    check_output_file(out, "--out", "master.json")
    key = generate_key(block_size)
    save_key(key, out, overwrite=force)
    typer.echo(f"wrote {out} (block size {block_size}, fingerprint {key.fingerprint})")


@app.command("key-info")
@user_errors
def key_info(key: Path = typer.Argument(..., help="Key file to inspect.")):
    """Validate a key file and print its kind, block size and fingerprint (never the secret)."""
    from lie_ray.keys import load_key

    loaded = load_key(key)
    typer.echo(
        f"{key}: {loaded.kind} key, block size {loaded.block_size}, "
        f"fingerprint {loaded.fingerprint}"
    )


@app.command()
@user_errors
@takes("key", "out", "data", "policy", "key_batch_size", "preview", "actors", "limit", "download")
def encrypt(
    given: Given,
    key: Path = typer.Option(..., "--key", help="Key file from 'lie-ray keygen'."),
    out: Path = typer.Option(..., "--out", help="Output directory for train/ and test/ shards."),
    policy: str = typer.Option(
        "fixed",
        "--policy",
        help="Key policy: fixed, id-group or per-image (per-minibatch keys are drawn in training).",
    ),
    preview: Path | None = typer.Option(
        None, "--preview", help="Also write a PNG of plain vs encrypted images."
    ),
    actors: int = typer.Option(2, "--actors", min=1, help="Ray Data encryption actors."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Encrypt only the first N images of each split."
    ),
    download: bool = typer.Option(
        False, "--download", help="Download full CIFAR-10 if --data holds none."
    ),
):
    """Encrypt CIFAR-10 into Parquet shards with a Ray Data actor pool."""
    from lie_ray.data.cifar import check_dataset
    from lie_ray.encryption.run import check_policy, run_encrypt
    from lie_ray.infra.session import ray_session
    from lie_ray.keys.policies import PolicySpec, load_key_for_policies
    from lie_ray.training.settings import TrainSettings

    key_batch_size = given.key_batch_size or TrainSettings.key_batch_size  # training's default
    check_output_dir(out)
    if preview is not None:
        check_output_file(preview, "--preview", "preview.png")
    spec = PolicySpec(policy, key_batch_size)
    load_key_for_policies(key, [policy], key_batch_size)  # fail before Ray starts
    check_policy(spec)
    data = check_dataset(given.data, download)
    with ray_session():
        manifest = run_encrypt(
            data, key, spec, out, actors=actors, limit=limit, preview=preview, download=download
        )
    typer.echo(
        f"wrote {manifest['rows']['train']} train and {manifest['rows']['test']} test "
        f"images to {out} (key {manifest['master_fingerprint']}, policy {policy})"
        + (f"; preview {preview}" if preview else "")
    )


@app.command()
@user_errors
@takes(
    "preset",
    "out",
    "data",
    "scenarios",
    "scenario_file",
    "key",
    *TRAINING,
    "storage",
    "max_concurrent_trials",
    "resume",
    "compile",
    "estimate",
    "calibration",
)
def train(
    given: Given,
    out: Path = typer.Option(
        Path("runs/train"),
        "--out",
        help="Output directory (all Ray storage, checkpoints and training.parquet go here).",
    ),
    key: str | None = typer.Option(
        None, "--key", help="Master key file or storage URI (needed by encrypted scenarios)."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted run in the same --out: finished trials are kept.",
    ),
):
    """Train the scenarios: one Ray Tune trial each, running Ray Train DDP fed by Ray Data."""
    from lie_ray.data.cifar import check_dataset
    from lie_ray.infra.storage import check_uri
    from lie_ray.scenarios import key_for_scenarios
    from lie_ray.training.capacity import embedded_cpus
    from lie_ray.training.run import run_training
    from lie_ray.training.settings import training_plan

    settings, chosen = training_plan(
        given.preset, given.scenarios, given.scenario_file, given.overrides("train")
    )
    if given.estimate:
        return print_estimate(chosen, settings, None, given.data, calibration=given.calibration)
    refuse_calibration_without_estimate(given)
    check_output_dir(out)  # fail before Ray starts
    check_storage(given.storage)
    data = check_dataset(given.data)
    storage = check_uri(given.storage) if given.storage else None
    key_for_scenarios(chosen, key, settings.block_size, settings.key_batch_size)
    with quiet_ray_work(out, num_cpus=embedded_cpus(settings)):
        table = run_training(chosen, settings, data, out, key, resume=resume, storage=storage)
    typer.echo(
        format_table(table, ["scenario", "train_error", "test_error", "epochs", "key_fingerprint"])
    )
    typer.echo(f"wrote {out / 'training.parquet'}")


@app.command()
@user_errors
def verify(
    out: Path = typer.Argument(..., help="The --out folder of 'lie-ray evaluate' or a sweep."),
    key: str | None = typer.Option(
        None, "--key", help="The key the scenarios were trained with (OUT/keys/master.json)."
    ),
    data: Path | None = typer.Option(
        None, "--data", help="The CIFAR-10 batches evaluated (default: the recorded directory)."
    ),
    robustbench: Path | None = typer.Option(
        None,
        "--robustbench",
        help="Once every figure agrees, write the fixed-key scenarios' adversarial sets here "
        "as RobustBench takes an outside evaluation (a .pt tensor of the test set's size each).",
    ),
):
    """Recompute every worst case from the saved images that decided it (fp32, through the
    defended pipeline) and compare with results.parquet: exit 0 when every figure agrees, else
    one line per disagreement and exit 1."""
    from lie_ray.evaluation.verify import export_robustbench
    from lie_ray.evaluation.verify import verify as verify_figures

    figures = verify_figures(out, key, data)
    wrong = [figure for figure in figures if not figure.agrees]
    for figure in wrong:
        typer.echo(figure.line())
    scenarios = len({figure.scenario for figure in figures})
    if wrong:
        typer.echo(f"{len(wrong)} of {len(figures)} worst-case figures disagree", err=True)
        raise typer.Exit(1)
    typer.echo(
        f"verified {len(figures)} worst-case figures of {scenarios} scenarios in {out}: "
        "every one agrees with results.parquet"
    )
    if robustbench is not None:
        written = export_robustbench(out, robustbench, data)
        typer.echo(f"wrote {len(written)} adversarial sets under {robustbench}")


@app.command()
@user_errors
@takes(
    "runs",
    "out",
    "preset",
    "data",
    "key",
    "scenarios",
    *EVALUATION,
    "attacks",
    "resume",
    "gpu",
    "storage",
    "compile",
    "estimate",
    "calibration",
)
def evaluate(
    given: Given,
    runs: Path = typer.Option(..., "--runs", help="The --out directory of 'lie-ray train'."),
    out: Path = typer.Option(
        Path("runs/eval"), "--out", help="Where the tables, report and pictures go."
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        help="The key the scenarios were trained with (needed by encrypted scenarios).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Reuse scenarios already evaluated into --out with the same checkpoint and settings.",
    ),
):
    """Evaluate trained scenarios: the paper's PGD beside BPDA, EOT, transfer, encrypted-input
    and gradient-free attacks; writes examples.parquet, results.parquet and report.md."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from lie_ray.attacks import registry
    from lie_ray.data.cifar import check_dataset
    from lie_ray.evaluation.run import check_keys, run_evaluation, trained_record
    from lie_ray.evaluation.settings import get_eval_preset
    from lie_ray.evaluation.tables import trained_rows
    from lie_ray.infra.session import check_gpu_choice
    from lie_ray.infra.storage import check_uri, join
    from lie_ray.infra.tables import read_training as read_training_table
    from lie_ray.report import write_report
    from lie_ray.scenarios import parse_names

    settings = get_eval_preset(given.preset).replace(**given.overrides("eval"))
    chosen = parse_names(given.scenarios) if given.scenarios is not None else None
    gpu = given.gpu
    check_gpu_choice(gpu or "auto")
    check_output_dir(out)  # fail before Ray starts
    check_storage(given.storage)
    parts = join(check_uri(given.storage), "evaluations") if given.storage else None
    trained = trained_rows(runs, chosen)
    if given.estimate:
        scenarios, network = trained_scenarios(trained)
        return print_estimate(
            scenarios, None, settings, given.data, network, calibration=given.calibration
        )
    refuse_calibration_without_estimate(given)
    data = check_dataset(given.data)
    check_keys(key, [trained_record(row) for row in trained])  # each at its own key batch
    with quiet_ray_work(out):
        results = run_evaluation(
            runs,
            data,
            out,
            key,
            settings,
            scenarios=chosen,
            resume=resume,
            gpu=gpu or "auto",
            parts=parts,
        )
    report = write_report(out, read_training_table(runs))
    sanity = [spec.name for spec in registry.sanity_runs(registry.chosen(settings.attacks))]
    headline = settings.headline_epsilon() or 0.0
    headline = results.filter(
        pc.and_(  # the attacks at the headline eps (the report's), not the sanity runs
            pc.less_equal(pc.abs(pc.subtract(results["epsilon"], headline)), 1e-6),
            pc.invert(pc.is_in(results["evaluation"], value_set=pa.array(sanity))),
        )
    )
    typer.echo(format_table(headline, ["scenario", "evaluation", "epsilon", "n", "error"]))
    typer.echo(f"wrote {out / 'examples.parquet'}, {out / 'results.parquet'} and {report}")


@app.command()
@user_errors
@takes(
    "preset",
    "out",
    "data",
    "scenarios",
    "scenario_file",
    "key",
    "resume",
    "storage",
    "max_concurrent_trials",
    "download",
    *TRAINING,
    *EVALUATION,
    "no_privacy",
    "privacy_transforms",
    "compile",
    "estimate",
    "calibration",
)
def sweep(
    given: Given,
    out: Path = typer.Option(
        Path("runs/sweep"),
        "--out",
        help="Where everything goes: key, encrypted shards, Ray storage, tables, report.",
    ),
    key: str | None = typer.Option(
        None,
        "--key",
        help="Master key file or URI; default: a new "
        "one made into OUT/keys/master.json (mode 0600).",
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue an interrupted sweep in the "
        "same --out: finished trials and evaluations are kept.",
    ),
    download: bool = typer.Option(
        False, "--download", help="Download full CIFAR-10 into --data if it holds none."
    ),
    no_privacy: bool = typer.Option(
        False, "--no-privacy", help="Skip the privacy attacks phase (see 'lie-ray privacy')."
    ),
    privacy_transforms: str | None = typer.Option(
        None,
        "--privacy-transforms",
        help="Comma-separated transforms the privacy phase attacks (default: all), e.g. le.",
    ),
):
    """The whole study: key, encryption, the scenarios trained, evaluation, report.

    Runs on an embedded Ray, or joins the cluster named by RAY_ADDRESS (as under
    'ray job submit')."""
    from lie_ray.app.study import (
        SweepRequest,
        predict,
        resolve_plan,
        run_sweep,
        summary,
        tensorboard_dir,
    )
    from lie_ray.training.capacity import embedded_cpus

    if given.estimate:
        from lie_ray.evaluation.settings import get_eval_preset
        from lie_ray.training.settings import training_plan

        settings, chosen = training_plan(
            given.preset, given.scenarios, given.scenario_file, given.overrides("train")
        )
        evaluation = get_eval_preset(given.preset).replace(**given.overrides("eval"))
        attacked = privacy_targets(no_privacy, privacy_transforms)
        return print_estimate(
            chosen,
            settings,
            evaluation,
            given.data,
            calibration=given.calibration,
            sweep=True,
            privacy_transforms=len(attacked),
        )
    check_output_dir(out)  # fail before Ray starts
    check_storage(given.storage)
    plan = resolve_plan(
        SweepRequest(
            out=out,
            data=given.data,
            preset=given.preset,
            scenarios=given.scenarios,
            scenario_files=given.scenario_file,
            key=key,
            resume=resume,
            storage=given.storage,
            download=download,
            privacy=privacy_targets(no_privacy, privacy_transforms),
            train_overrides=given.overrides("train"),
            eval_overrides=given.overrides("eval"),
            calibration=given.calibration,
        )
    )
    predicted = predict(plan)  # probed before Ray starts its own processes beside the probe
    with quiet_ray_work(out, num_cpus=embedded_cpus(plan.train)):
        tables = run_sweep(plan, predicted)
    typer.echo(summary(tables["training"], tables["results"], out.resolve(), tensorboard_dir(plan)))


@app.command()
@user_errors
@takes("key", "preset", "data", "out", "transforms")
def privacy(
    given: Given,
    key: Path = typer.Option(
        ...,
        "--key",
        help="Master key file: the defender's key is its 'fixed' sub-key, as in the sweep.",
    ),
    out: Path = typer.Option(
        Path("runs/privacy"),
        "--out",
        help="Where privacy.parquet, privacy.md and privacy_gallery.png go.",
    ),
    transforms: str | None = typer.Option(
        None, "--transforms", help="Comma-separated transforms (default: all), e.g. le,shuffle."
    ),
):
    """Privacy attacks on every transform: key recovery (known and chosen plaintext),
    ciphertext-only FR-basic, the learned ITN inversion (Ray Train) and a key-space audit."""
    import pyarrow.compute as pc

    from lie_ray.privacy.run import resolve_privacy, run_privacy
    from lie_ray.report import write_privacy

    check_output_dir(out)  # fail before Ray starts
    loaded, names, settings, data = resolve_privacy(key, given.preset, given.data, transforms)
    with quiet_ray_work(out, resumable=False):
        table = run_privacy(data, loaded, out, names, settings)
        write_privacy(out)  # privacy.md, from the table the job wrote
    typer.echo(
        format_table(
            table.filter(pc.not_equal(table["attack"], "key-space")),
            ["transform", "attack", "k", "ssim", "psnr", "key_recovered"],
        )
    )
    typer.echo(
        f"wrote {out / 'privacy.parquet'}, {out / 'privacy.md'} and {out / 'privacy_gallery.png'}"
    )


@app.command()
@user_errors
def report(
    results: Path = typer.Option(
        ..., "--results", help="The --out directory of 'lie-ray evaluate'."
    ),
):
    """Re-render report.md and curves.png from an evaluation's Parquet tables."""
    from lie_ray.report import write_report

    if results.is_dir():  # else write_report says where the results should come from
        check_output_dir(results, "--results")
    typer.echo(f"wrote {write_report(results)}")


@app.command()
@user_errors
def board(
    runs: list[Path] = typer.Argument(
        ..., help="Finished runs' --out folders (e.g. of 'lie-ray sweep --preset board')."
    ),
    out: Path = typer.Option(Path("board"), "--out", help="Where board.md, .json, .png go."),
):
    """Rank the key-based defences of finished runs: board.md, board.json and board.png."""
    from lie_ray.report.board import write_board

    check_output_dir(out, "--out")
    written = write_board(runs, out)
    typer.echo(f"wrote {', '.join(str(p) for p in written)}")


def privacy_targets(no_privacy: bool, given: str | None) -> tuple[str, ...]:
    """The transforms the sweep's privacy phase attacks (none: --no-privacy), checked now."""
    from lie_ray.privacy import targets

    if no_privacy and given is not None:
        raise LieRayError(
            "--no-privacy skips the phase that --privacy-transforms picks transforms for: "
            "drop one of them"
        )
    return () if no_privacy else tuple(targets.chosen(given, "--privacy-transforms"))


def refuse_calibration_without_estimate(given: Given) -> None:
    """train and evaluate keep no prediction beside their run (the sweep does), so a
    calibration without ``--estimate`` would be silently ignored."""
    if given.calibration is not None:
        raise LieRayError(
            "--calibration scales --estimate's figures, and this command only "
            "uses it with --estimate: add --estimate, or drop --calibration"
        )


def print_estimate(
    scenarios,
    train,
    evaluation,
    data_dir,
    network: dict | None = None,
    calibration: Path | None = None,
    sweep: bool = False,
    privacy_transforms: int = 0,
) -> None:
    """``--estimate``: the cost table (lie_ray.app.estimate), on the device the run would
    use here, scaled by ``--calibration``'s measured ratios when given; nothing is written and
    Ray does not start."""
    from lie_ray.app.calibration import read_calibration
    from lie_ray.app.estimate import for_run
    from lie_ray.data.cifar import check_dataset

    ratios = read_calibration(calibration) if calibration is not None else None
    typer.echo(
        for_run(
            scenarios,
            train,
            evaluation,
            check_dataset(data_dir),
            network,
            ratios,
            sweep,
            privacy_transforms,
        ).table()
    )


def trained_scenarios(trained: list[dict]) -> tuple[list, dict]:
    """The scenarios a training table holds, as far as their evaluation's cost goes, and
    their network's shape (from the first run record)."""
    import json

    from lie_ray.scenarios import Scenario

    records = [json.loads(row["record"]) for row in trained]
    scenarios = []
    for record in records:
        definition, transform = record["scenario"], record["scenario"]["transform"] or {}
        scenarios.append(
            Scenario(
                definition["name"],
                encrypted=definition["encrypted"],
                key_policy=definition["key_policy"],
                transform=transform.get("name", "le"),
                variant=transform.get("variant"),
            )
        )
    shape = records[0]["settings"]
    return scenarios, {k: shape[k] for k in ("width", "adaptation_channels", "batch_size")}


def format_table(table, columns: list[str]) -> str:
    """A small fixed-width text table for the console."""
    rows = table.select(columns).to_pylist()
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """``lie-ray``: the app, with click's own usage errors as one line."""
    run_command(typer.main.get_command(app), argv, "lie-ray")


def sweep_main() -> None:
    """``python -m lie_ray.sweep``: the ``sweep`` command of the ``lie-ray`` CLI."""
    configure_logging(verbose="--verbose" in sys.argv or "-v" in sys.argv)
    command = typer.main.get_command(app).commands["sweep"]
    run_command(
        command,
        [a for a in sys.argv[1:] if a not in ("--verbose", "-v")],
        "python -m lie_ray.sweep",
    )


def run_command(command, argv: list[str] | None, prog_name: str) -> None:
    """Run a click command; a usage error (an option out of range, a typo, a missing value)
    is one ``error:`` line naming the option and pointing at ``--help``, exit status 2,
    instead of click's boxed block of usage text."""
    try:
        status = command.main(args=argv, prog_name=prog_name, standalone_mode=False)
    except typer.TyperException as err:  # click's exceptions, as typer vendors them
        if type(err).__name__ == "NoArgsIsHelpError":
            sys.exit(EXIT_USER_ERROR)  # typer printed the help already
        ctx = getattr(err, "ctx", None)
        hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        message = " ".join(err.format_message().split()).rstrip(".")
        typer.echo(f"error: {message}{hint}", err=True)
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    sys.exit(status if isinstance(status, int) else 0)


if __name__ == "__main__":
    main()
