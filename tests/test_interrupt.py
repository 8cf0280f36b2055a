"""Issue 15: Ctrl-C and SIGTERM end a job with one line naming what is kept and how to resume,
exit status 128 + the signal, and never a table built from unfinished work.

Signals here are real (``os.kill`` on this process, or from a Tune trial to its driver). The
end-to-end case, a real sweep interrupted by SIGINT and then resumed, is in test_sweep.py.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from ray import tune
from typer.testing import CliRunner

import lie_ray.data.cifar
from lie_ray.app.cli import app
from lie_ray.infra.interrupt import Interrupted, on_interrupt, tune_fit


@pytest.fixture(autouse=True)
def default_sigint():
    """Python's own Ctrl-C handler for each test, whatever this process inherited: a test run
    started in the background of a non-interactive shell begins with SIGINT ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def fill_out(out):
    """What an interrupted sweep keeps: its key, shards, a Train checkpoint, an evaluation."""
    for path in [
        "keys/master.json",
        "encrypted/manifest.json",
        "ray/runs/Plain/checkpoint_2026/model.pt",
        "evaluations/Plain.parquet",
    ]:
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text("x")
    return out


@pytest.mark.parametrize(
    "signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"]
)
def test_a_signal_becomes_one_line_naming_what_is_kept(tmp_path, signum, status):
    out = fill_out(tmp_path)
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    with pytest.raises(Interrupted) as caught:
        with on_interrupt(out):
            os.kill(os.getpid(), signum)
            pytest.fail("the signal did not stop the block")
    assert caught.value.exit_status == status
    name = signal.Signals(signum).name
    assert str(caught.value) == (
        f"interrupted by {name}: kept in {out}: the master key, the encrypted shards, the "
        "checkpoints of 1 scenario, evaluations of 1 scenario (Plain); no table was written "
        "from unfinished work; run the same command again with --resume to continue"
    )
    assert {sig: signal.getsignal(sig) for sig in before} == before  # handlers given back


def tuner(tmp_path, name, signum):
    def slow_trial(config):  # nested: Ray pickles it by value (workers cannot import tests)
        """Reports once; with a signal to send, has its driver signalled and runs on until
        Tune stops it: an unfinished trial."""
        tune.report({"step": 1})
        if not config["signal"]:
            return
        os.kill(config["driver"], config["signal"])
        for step in range(2, 600):  # a minute of work at most: Tune stops it long before
            time.sleep(0.1)  # the trial's "work", not synchronisation
            tune.report({"step": step})

    return tune.Tuner(
        tune.with_resources(slow_trial, {"cpu": 0.25}),
        param_space={"driver": os.getpid(), "signal": signum},
        run_config=tune.RunConfig(name=name, storage_path=str(tmp_path)),
    )


def test_sigterm_during_tune_fit_stops_it_gracefully_and_raises(ray_cluster, tmp_path):
    with on_interrupt(tmp_path):
        results = tune_fit(tuner(tmp_path, "quick", 0))  # no signal: results as usual
        assert results.num_terminated == 1
        # Tune leaves its SIGINT handler installed after a fit; ours must be back, or the next
        # Ctrl-C would be swallowed.
        assert signal.getsignal(signal.SIGINT).__module__ == "lie_ray.infra.interrupt"
        with pytest.raises(Interrupted) as caught:
            tune_fit(tuner(tmp_path, "stopped", int(signal.SIGTERM)))
    assert caught.value.signum == signal.SIGTERM and caught.value.exit_status == 143
    stopped = str(tmp_path / "stopped")
    assert tune.Tuner.can_restore(stopped)  # Tune saved its state, to resume from
    saved = tune.ExperimentAnalysis(stopped).trials[0]
    assert saved.status != "TERMINATED" and saved.last_result["step"] < 100  # unfinished
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_before_any_ray_work_is_one_line_and_status_130(tmp_path, monkeypatch):
    def interrupted_check(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the data is being checked

    monkeypatch.setattr(lie_ray.data.cifar, "check_dataset", interrupted_check)
    result = CliRunner().invoke(
        app, ["train", "--out", str(tmp_path / "out"), "--scenarios", "Plain"]
    )
    assert result.exit_code == 130, result.output
    assert result.stderr == (
        "interrupted by SIGINT: stopped; files are written whole or not "
        "at all, so run the command again\n"
    )
    assert not (tmp_path / "out").exists()
