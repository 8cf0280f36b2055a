"""The command-line options, each declared once: flag, type, limits, help, and the settings
field it fills (as robustness's ``defaults.py`` declares its arguments).

``OPTIONS`` is the table. ``@takes(...)`` builds a typer command's parameters from it: the
command names, in ``--help`` order, the table's rows it takes and its own parameters (the few
options whose help or default is the command's alone, such as ``--out``), and receives the
table's values as one ``given: Given``. ``given.overrides("train")`` is then what
``TrainSettings.replace`` takes, ``given.overrides("eval")`` what ``EvalSettings.replace``
takes: an option left out is ``None``, which keeps the preset's value.

typer reads a command's parameters from ``inspect.signature``, so ``takes`` writes the
function's ``__signature__`` (and ``__annotations__``, which typer reads for the types).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from lie_ray.data.cifar import DEFAULT_DATA_DIR
from lie_ray.errors import LieRayError
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.training.settings import TrainSettings

# The settings objects an option may fill, by the name its rows use ("train.epochs").
# No option fills PrivacySettings today: the privacy phase takes the preset at the key's
# block size. A row that did would add "privacy" here and be applied where that is resolved.
SETTINGS: dict[str, type] = {"train": TrainSettings, "eval": EvalSettings}


def parse_floats(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise LieRayError(f"--epsilons must be comma-separated numbers, got {text!r}") from None


def parse_attacks(text: str | None) -> tuple[str, ...] | None:
    """--attacks: names, 'default' standing for lie_ray's own attacks (the run without the
    option). The registry (and torch with it) is read only when the option is given."""
    if text is None:
        return None
    from lie_ray.attacks import registry

    names = []
    for name in (v.strip() for v in text.split(",") if v.strip()):
        names += [s.name for s in registry.default_attacks()] if name == "default" else [name]
    return tuple(names)


def given_only(flag: bool) -> bool | None:
    """A switch that only turns a setting on: off leaves the preset's value."""
    return flag or None


@dataclass(frozen=True)
class Option:
    flag: str
    type: Any
    default: Any = None
    help: str | None = None
    min: int | None = None
    fills: tuple[str, ...] = ()  # "train.num_workers", "eval.test_limit": settings.field
    parse: Callable[[Any], Any] | None = None  # the value as given -> the setting's

    def __post_init__(self):
        for target in self.fills:
            settings, _, name = target.partition(".")
            if name not in {f.name for f in dataclasses.fields(SETTINGS[settings])}:
                raise TypeError(f"{self.flag} fills {target}, which {settings} settings lack")

    def parameter(self, name: str) -> inspect.Parameter:
        declared = typer.Option(self.flag, help=self.help, min=self.min)
        return inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.type, declared],
        )

    def setting(self, value: Any) -> Any:
        return value if self.parse is None else self.parse(value)


OPTIONS: dict[str, Option] = {
    # What to run, and on what (train, evaluate, sweep, privacy; --data encrypt too).
    "preset": Option(
        "--preset",
        str,
        "smoke",
        help="Settings preset: smoke (minutes), study "
        "(models that learn, about an hour on 2 cores), paper, family (one "
        "scenario per transform), or board (the family at the study scale: 'lie-ray board').",
    ),
    "data": Option(
        "--data",
        Path,
        Path(DEFAULT_DATA_DIR),
        help="CIFAR-10 'cifar-10-batches-py' directory (or its parent).",
    ),
    "scenarios": Option(
        "--scenarios", str | None, help="Comma-separated scenario names (default: all)."
    ),
    "scenario_file": Option(
        "--scenario-file",
        list[Path] | None,
        help="TOML file of extra scenario records (docs/training.md); repeat for several.",
    ),
    "storage": Option(
        "--storage",
        str | None,
        help="Where cluster nodes write "
        "(checkpoints, shards, evaluation parts): a path or URI every node "
        "reaches, e.g. s3://bucket/lie_ray?region=us-east-1.",
    ),
    # TrainSettings (train, sweep).
    "epochs": Option("--epochs", int | None, min=1, fills=("train.epochs",)),
    "batch_size": Option("--batch-size", int | None, min=1, fills=("train.batch_size",)),
    "lr": Option("--lr", float | None, fills=("train.lr",)),
    "width": Option(
        "--width", int | None, min=1, help="ResNet18 base width.", fills=("train.width",)
    ),
    "workers": Option(
        "--workers",
        int | None,
        min=1,
        help="Ray Train DDP workers per trial.",
        fills=("train.num_workers",),
    ),
    "gpu": Option("--gpu", str | None, help="auto, yes or no.", fills=("train.gpu",)),
    "pgd_steps": Option(
        "--pgd-steps",
        int | None,
        help="PGD steps for adversarial training.",
        fills=("train.pgd_steps",),
    ),
    "pgd_step_size": Option("--pgd-step-size", float | None, fills=("train.pgd_step_size",)),
    "pgd_eps": Option("--pgd-eps", float | None, fills=("train.pgd_eps",)),
    "adv_attack": Option(
        "--adv-attack",
        str | None,
        help="How adversarial training's PGD "
        "meets the cipher: bpda (true forward, surrogate backward; default) "
        "or pgd (plain autograd, zero gradient through LE).",
        fills=("train.adv_attack",),
    ),
    "train_limit": Option(
        "--train-limit",
        int | None,
        min=1,
        help="Use only the first N training images.",
        fills=("train.train_limit",),
    ),
    "attacker_holdout": Option(
        "--attacker-holdout",
        int | None,
        min=16,
        help="The last N train images are the attacker's own: never trained on, never "
        "attacked (default 512).",
        fills=("train.attacker_holdout",),
    ),
    "test_limit": Option(
        "--test-limit",
        int | None,
        min=1,
        help="Use only the first N test images.",
        fills=("train.test_limit",),
    ),
    "key_batch_size": Option(
        "--key-batch-size",
        int | None,
        min=1,
        help="Ids per key "
        "group under the id-group policy, and outside training under "
        "per-minibatch (default 128); evaluation reads it from each "
        "run's record.",
        fills=("train.key_batch_size",),
    ),
    "max_concurrent_trials": Option(
        "--max-concurrent-trials",
        int | None,
        min=1,
        help="At most N scenario trials at "
        "once (default: as many as the cluster holds, or may grow to).",
        fills=("train.max_concurrent_trials",),
    ),
    # EvalSettings (evaluate, sweep).
    "epsilons": Option(
        "--epsilons",
        str | None,
        help="Comma-separated attack epsilons, e.g. 0,0.031,0.1.",
        fills=("eval.epsilons",),
        parse=parse_floats,
    ),
    "eval_limit": Option(
        "--eval-limit",
        int | None,
        min=1,
        help="Attack only the first N test images.",
        fills=("eval.test_limit",),
    ),
    "eval_pgd_steps": Option(
        "--eval-pgd-steps",
        int | None,
        min=1,
        help="PGD steps of the evaluation attacks.",
        fills=("eval.pgd_steps",),
    ),
    "eval_restarts": Option(
        "--eval-restarts",
        int | None,
        min=1,
        help="Random restarts of every adaptive PGD (not the paper's readings).",
        fills=("eval.pgd_restarts",),
    ),
    "eot_keys": Option(
        "--eot-keys",
        int | None,
        min=1,
        help="Random keys the keyless (EOT) attacker averages over.",
        fills=("eval.eot_keys",),
    ),
    "square_queries": Option(
        "--square-queries",
        int | None,
        min=1,
        help="Queries of the gradient-free Square attack.",
        fills=("eval.square_queries",),
    ),
    "actors": Option(
        "--actors",
        int | None,
        min=1,
        help="Evaluation actors per scenario.",
        fills=("eval.actors",),
    ),
    "evaluation": Option(
        "--evaluation",
        str | None,
        help="cascade: each attack only on "
        "the images its attacker has not broken yet, cheapest first (the "
        "same worst cases for far fewer attacks; the paper preset's "
        "default); full: every attack on every image.",
        fills=("eval.mode",),
    ),
    "pba_steps": Option(
        "--pba-steps",
        int | None,
        min=4,
        help="Steps fitting each variant of the bypass (PBA's stand-in for the keyed transform).",
        fills=("eval.pba_steps",),
    ),
    "key_search_budget": Option(
        "--key-search-budget",
        int | None,
        min=1,
        help="Candidate keys the keyless key search scores on the attacker's images.",
        fills=("eval.key_search_budget",),
    ),
    "attacker_images": Option(
        "--attacker-images",
        int | None,
        min=4,
        help="Of the attacker's held-out images, how many it fits its bypass, searches "
        "keys and leaks pairs with; it judges its fits on the rest.",
        fills=("eval.attacker_images",),
    ),
    # Both.
    "estimate": Option(
        "--estimate",
        bool,
        False,
        help="Print what the run would cost "
        "(image-passes, device-hours, wall time on this machine, from a short "
        "probe of the preset's network) and run nothing else.",
        parse=given_only,
    ),
    "attacks": Option(
        "--attacks",
        str | None,
        help="Comma-separated attacks to run, by name (default: every one of lie_ray's own, "
        "which 'default' stands for): attacks installed from outside lie_ray run only when "
        "named, e.g. --attacks default,wrong-key.",
        fills=("eval.attacks",),
        parse=parse_attacks,
    ),
    "calibration": Option(
        "--calibration",
        Path | None,
        help="An earlier sweep's --out "
        "folder on this machine: its measured times scale the estimate's "
        "bare-PyTorch probe by what the cluster adds (docs/measurements.md).",
    ),
    "compile": Option(
        "--compile",
        bool,
        False,
        help="torch.compile the networks for training "
        "and attacks: minutes of compiling, paid back on long GPU runs (the "
        "paper preset), not on CPUs or smoke runs.",
        fills=("train.compile", "eval.compile"),
        parse=given_only,
    ),
}
# The rows that fill TrainSettings and EvalSettings, in --help order (train, evaluate, sweep).
TRAINING = (
    "epochs",
    "batch_size",
    "lr",
    "width",
    "workers",
    "gpu",
    "pgd_steps",
    "pgd_step_size",
    "pgd_eps",
    "adv_attack",
    "key_batch_size",
    "train_limit",
    "attacker_holdout",
    "test_limit",
)
EVALUATION = (
    "epsilons",
    "eval_limit",
    "eval_pgd_steps",
    "eval_restarts",
    "eot_keys",
    "square_queries",
    "pba_steps",
    "key_search_budget",
    "attacker_images",
    "actors",
    "evaluation",
)


@dataclass(frozen=True)
class Given:
    """The values one command took for the table's options: ``given.preset``, and the
    settings overrides they make."""

    values: Mapping[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(f"this command takes no option {name!r}") from None

    def overrides(self, settings: str) -> dict[str, Any]:
        """``field: value`` for every option of this command that fills ``settings``."""
        return {
            target.partition(".")[2]: OPTIONS[name].setting(value)
            for name, value in self.values.items()
            for target in OPTIONS[name].fills
            if target.partition(".")[0] == settings
        }


def takes(*names: str) -> Callable[[Callable], Callable]:
    """The command's parameters, in ``--help`` order: rows of ``OPTIONS`` and the command's
    own parameters (an own parameter named like a row is the command's own option, as
    encrypt's ``--actors``). The command gets the rows' values as its ``given`` parameter."""

    def decorate(command: Callable) -> Callable:
        own = {
            n: p
            for n, p in inspect.signature(command, eval_str=True).parameters.items()
            if n != "given"
        }
        unknown = [n for n in names if n not in own and n not in OPTIONS]
        left_out = [n for n in own if n not in names]
        if unknown or left_out:
            raise TypeError(
                f"@takes on {command.__name__}: no option {unknown}, "
                f"parameters not listed {left_out}"
            )
        parameters = [
            own[n].replace(kind=inspect.Parameter.KEYWORD_ONLY)
            if n in own
            else OPTIONS[n].parameter(n)
            for n in names
        ]

        @functools.wraps(command)
        def wrapper(**values):
            given = Given({n: values.pop(n) for n in names if n not in own})
            return command(**values, given=given)

        wrapper.__signature__ = inspect.Signature(parameters)
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate
