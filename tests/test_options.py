"""The option table (lie_ray.app.options): each row builds the same typer option in every
command that takes it, and fills the settings field it names."""

from __future__ import annotations

import inspect

import pytest
import typer

from lie_ray.app import cli
from lie_ray.app.options import EVALUATION, OPTIONS, TRAINING, Given, Option, takes
from lie_ray.evaluation.settings import get_eval_preset
from lie_ray.training.settings import get_preset


def click_options(name: str) -> dict:
    command = typer.main.get_command(cli.app).commands[name]
    return {p.opts[0]: p for p in command.params}


@pytest.mark.parametrize("command", ["encrypt", "train", "evaluate", "sweep", "privacy"])
def test_a_row_is_the_same_option_in_every_command_that_takes_it(command):
    rows = {o.flag: o for o in OPTIONS.values()}
    for flag, param in click_options(command).items():
        if flag in rows and not (command == "encrypt" and flag == "--actors"):
            row = rows[flag]
            assert param.help == row.help and param.default == row.default, flag
            assert param.min == row.min, flag


def test_the_sweep_takes_every_settings_row():
    flags = click_options("sweep")
    assert all(
        OPTIONS[n].flag in flags
        for n in (*TRAINING, *EVALUATION, "compile", "max_concurrent_trials")
    )


def test_overrides_fill_the_named_settings_fields():
    given = Given(
        {
            "workers": 2,
            "eval_limit": 16,
            "epsilons": "0,0.1",
            "compile": False,
            "gpu": "no",
            "preset": "smoke",
        }
    )
    assert given.overrides("train") == {"num_workers": 2, "compile": None, "gpu": "no"}
    assert given.overrides("eval") == {"test_limit": 16, "epsilons": (0.0, 0.1), "compile": None}
    assert get_preset("smoke").replace(**given.overrides("train")).num_workers == 2
    assert get_eval_preset("smoke").replace(**given.overrides("eval")).test_limit == 16
    assert given.preset == "smoke"
    with pytest.raises(AttributeError, match="no option 'storage'"):
        _ = given.storage


def test_a_row_naming_a_missing_field_fails_at_once():
    with pytest.raises(TypeError, match="train.nope"):
        Option("--nope", int, fills=("train.nope",))


def test_takes_refuses_unlisted_parameters_and_unknown_rows():
    def command(given: Given, out: str = "x"):
        pass

    with pytest.raises(TypeError, match=r"not listed \['out'\]"):
        takes("preset")(command)
    with pytest.raises(TypeError, match=r"no option \['nope'\]"):
        takes("out", "nope")(command)
    assert list(inspect.signature(takes("preset", "out")(command)).parameters) == ["preset", "out"]
