"""``lie-ray``: one subcommand per job.

User mistakes (a ``LieRayError``) print one line, ``error: ...``, and exit with status 2; no
traceback. Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

from lie_ray.data.cifar import DEFAULT_DATA_DIR
from lie_ray.errors import LieRayError

app = typer.Typer(
    name="lie-ray", no_args_is_help=True, pretty_exceptions_enable=False,
    help="Adversarial tests of learnable image encryption (Tanaka's block cipher), on Ray.")

EXIT_USER_ERROR = 2


def user_errors(command: Callable) -> Callable:
    """Turn a LieRayError into a one-line message and exit status 2."""
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except LieRayError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_USER_ERROR) from None
    return wrapper


@app.callback()
def main_options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")):
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s", force=True)


@app.command()
@user_errors
def keygen(
    out: Path = typer.Option(..., "--out", help="Where to write the key file (mode 0600)."),
    block_size: int = typer.Option(4, "--block-size", "-M", help="Block size M of the cipher."),
    force: bool = typer.Option(False, "--force", help="Replace an existing key file."),
):
    """Write a new master key (256 bits from the OS CSPRNG); prints its fingerprint."""
    from lie_ray.keys import generate_key, save_key

    key = generate_key(block_size)
    save_key(key, out, overwrite=force)
    typer.echo(f"wrote {out} (block size {block_size}, fingerprint {key.fingerprint})")


@app.command("key-info")
@user_errors
def key_info(key: Path = typer.Argument(..., help="Key file to inspect.")):
    """Validate a key file and print its kind, block size and fingerprint (never the secret)."""
    from lie_ray.keys import load_key

    loaded = load_key(key)
    typer.echo(f"{key}: {loaded.kind} key, block size {loaded.block_size}, "
               f"fingerprint {loaded.fingerprint}")


@app.command()
@user_errors
def encrypt(
    key: Path = typer.Option(..., "--key", help="Key file from 'lie-ray keygen'."),
    out: Path = typer.Option(..., "--out", help="Output directory for train/ and test/ shards."),
    data: Path = typer.Option(Path(DEFAULT_DATA_DIR), "--data",
                              help="CIFAR-10 'cifar-10-batches-py' directory (or its parent)."),
    policy: str = typer.Option("fixed", "--policy", help="Key policy: fixed or per-batch."),
    key_batch_size: int = typer.Option(128, "--key-batch-size",
                                       help="Images per key under the per-batch policy."),
    preview: Optional[Path] = typer.Option(None, "--preview",
                                           help="Also write a PNG of plain vs encrypted images."),
    actors: int = typer.Option(2, "--actors", min=1, help="Ray Data encryption actors."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1,
                                        help="Encrypt only the first N images of each split."),
    download: bool = typer.Option(False, "--download",
                                  help="Download full CIFAR-10 if --data holds none."),
):
    """Encrypt CIFAR-10 into Parquet shards with a Ray Data actor pool."""
    from lie_ray.encryption import run_encrypt
    from lie_ray.policies import PolicySpec
    from lie_ray.runtime import ray_session

    spec = PolicySpec(policy, key_batch_size)
    spec.build()  # reject an unknown policy before starting Ray
    with ray_session():
        manifest = run_encrypt(data, key, spec, out, actors=actors, limit=limit,
                               preview=preview, download=download)
    typer.echo(f"wrote {manifest['rows']['train']} train and {manifest['rows']['test']} test "
               f"images to {out} (key {manifest['master_fingerprint']}, policy {policy})"
               + (f"; preview {preview}" if preview else ""))


@app.command()
@user_errors
def train(
    preset: str = typer.Option("smoke", "--preset", help="Settings preset: smoke or paper."),
    out: Path = typer.Option(Path("runs/train"), "--out", help="Output directory (all Ray "
                             "storage, checkpoints and training.parquet go here)."),
    data: Path = typer.Option(Path(DEFAULT_DATA_DIR), "--data", help="CIFAR-10 directory."),
    scenarios: Optional[str] = typer.Option(None, "--scenarios",
                                            help="Comma-separated scenario names (default: all)."),
    scenario_file: Optional[Path] = typer.Option(None, "--scenario-file",
                                                 help="TOML file with more [[scenario]] records."),
    key: Optional[Path] = typer.Option(None, "--key", help="Master key file (needed by "
                                       "encrypted scenarios)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr"),
    width: Optional[int] = typer.Option(None, "--width", min=1, help="ResNet18 base width."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Ray Train DDP workers per trial."),
    gpu: Optional[str] = typer.Option(None, "--gpu", help="auto, yes or no."),
    pgd_steps: Optional[int] = typer.Option(None, "--pgd-steps",
                                            help="PGD steps for adversarial training."),
    pgd_step_size: Optional[float] = typer.Option(None, "--pgd-step-size"),
    pgd_eps: Optional[float] = typer.Option(None, "--pgd-eps"),
    train_limit: Optional[int] = typer.Option(None, "--train-limit", min=1,
                                              help="Use only the first N training images."),
    test_limit: Optional[int] = typer.Option(None, "--test-limit", min=1),
):
    """Train the scenarios: one Ray Tune trial each, running Ray Train DDP fed by Ray Data."""
    from lie_ray.presets import get_preset
    from lie_ray.runtime import ray_session
    from lie_ray.scenarios import select_scenarios
    from lie_ray.training.run import run_training

    settings = get_preset(preset).replace(
        epochs=epochs, batch_size=batch_size, lr=lr, width=width, num_workers=workers, gpu=gpu,
        pgd_steps=pgd_steps, pgd_step_size=pgd_step_size, pgd_eps=pgd_eps,
        train_limit=train_limit, test_limit=test_limit)
    chosen = [s.with_attack(eps=settings.pgd_eps, step_size=settings.pgd_step_size,
                            steps=settings.pgd_steps)
              for s in select_scenarios(scenarios, scenario_file)]
    with ray_session(num_cpus=settings.logical_cpus()):
        table = run_training(chosen, settings, data, out, key)
    typer.echo(format_table(table, ["scenario", "train_error", "test_error", "epochs",
                                    "key_fingerprint"]))
    typer.echo(f"wrote {out / 'training.parquet'}")


def format_table(table, columns: list[str]) -> str:
    """A small fixed-width text table for the console."""
    rows = table.select(columns).to_pylist()
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()]
             for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
