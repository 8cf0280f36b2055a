"""Ctrl-C and SIGTERM: stop, keep what is finished, say in one line how to resume.

Every job writes its results whole or not at all (``lie_ray.infra.atomic``) and keeps finished work
(Tune trials, Train checkpoints, evaluated scenarios), so an interrupted job loses only the
unfinished part. What it must not do is carry on with half the work: before this module,
Ray Tune caught Ctrl-C, saved its state and returned, and the training job then built
``training.parquet`` from unfinished trials and died with a ``KeyError``.

* ``on_interrupt(out)``, entered after ``ray.init`` (which installs its own SIGTERM handler),
  turns SIGINT and SIGTERM into ``Interrupted``, whose message lists what OUT keeps.
* SIGTERM is handled as SIGINT, so during ``Tuner.fit`` it takes Tune's graceful path: Tune
  saves its experiment state one last time and returns.
* ``tune_fit(tuner)`` runs the fit, puts our SIGINT handler back (Tune leaves its own
  installed, which would swallow the next Ctrl-C) and raises ``Interrupted`` when a signal
  stopped the fit, before anyone reads the unfinished trials.

The CLI prints the message and exits with 128 + the signal number (130 for SIGINT, 143 for
SIGTERM), the shell's convention.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

RESUME_HINT = "run the same command again with --resume to continue"
RERUN_HINT = "run the same command again to start over"  # a job without --resume
_received: list[int] = []  # the signals that stopped the current job, in order of arrival


class Interrupted(Exception):
    """The job stopped on a signal; ``str()`` is the one line the user sees."""

    def __init__(self, signum: int, message: str = ""):
        self.signum = signum
        super().__init__(message or f"interrupted by {signal.Signals(signum).name}")

    @property
    def exit_status(self) -> int:
        return 128 + self.signum


def _on_sigint(signum, frame) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _on_sigterm(signum, frame) -> None:
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)  # ours (raises), or Tune's while it runs a fit
    if not callable(handler):
        raise KeyboardInterrupt
    handler(signal.SIGINT, frame)


@contextlib.contextmanager
def on_interrupt(out: str | os.PathLike, resumable: bool = True) -> Iterator[None]:
    """SIGINT and SIGTERM inside the block end the job with ``Interrupted``, naming what
    ``out`` keeps; ``resumable`` False: the job has no ``--resume``, so the line does not
    promise one. A no-op off the main thread (signal handlers live there)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {
        sig: signal.signal(sig, handler)
        for sig, handler in ((signal.SIGINT, _on_sigint), (signal.SIGTERM, _on_sigterm))
    }
    _received.clear()
    try:
        yield
    except (KeyboardInterrupt, Interrupted) as err:
        signum = _received[0] if _received else getattr(err, "signum", signal.SIGINT)
        raise Interrupted(signum, describe(signum, out, resumable)) from None
    finally:
        _received.clear()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def tune_fit(tuner):
    """``tuner.fit()``, raising ``Interrupted`` if a signal stopped it (Tune then returns the
    unfinished trials as if nothing happened)."""
    ours = signal.getsignal(signal.SIGINT)
    tune_log = logging.getLogger("ray.tune.tune")
    tune_log.addFilter(_no_restore_hint)
    try:
        results = tuner.fit()
    finally:
        tune_log.removeFilter(_no_restore_hint)
    if threading.current_thread() is threading.main_thread():
        tune_caught = signal.getsignal(signal.SIGINT) is ours and tune_handles_sigint()
        signal.signal(signal.SIGINT, ours)
        if tune_caught and ours is _on_sigint:  # Tune's handler ran, then restored ours
            _received.append(signal.SIGINT)
    unfinished = results.num_terminated + results.num_errors < len(results)
    if _received or unfinished:
        raise Interrupted(_received[0] if _received else signal.SIGINT)
    return results


def _no_restore_hint(record: logging.LogRecord) -> bool:
    """Drop Tune's 'Resume experiment with: Tuner.restore(...)': our line says --resume."""
    return "has been interrupted" not in record.getMessage()


def tune_handles_sigint() -> bool:
    """Tune installs a SIGINT handler for each fit unless told not to (documented env var)."""
    return not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))


def describe(signum: int, out: str | os.PathLike, resumable: bool = True) -> str:
    """One line: the signal, what ``out`` keeps, how to go on."""
    kept = kept_in(Path(out))
    where = f"kept in {Path(out).resolve()}: {', '.join(kept)}" if kept else "nothing was kept"
    return (
        f"interrupted by {signal.Signals(signum).name}: {where}; no table was written from "
        f"unfinished work; {RESUME_HINT if resumable else RERUN_HINT}"
    )


def kept_in(out: Path) -> list[str]:
    """The finished pieces a resumed job reuses, as the default layout stores them."""
    kept = []
    if (out / "keys" / "master.json").is_file():
        kept.append("the master key")
    if (out / "encrypted" / "manifest.json").is_file():
        kept.append("the encrypted shards")
    runs = [run for run in (out / "ray" / "runs").glob("*") if any(run.glob("checkpoint_*"))]
    if runs:
        kept.append(f"the checkpoints of {_count(len(runs), 'scenario')}")
    if (out / "training.parquet").is_file():
        kept.append("training.parquet")
    evaluated = sorted(p.stem for p in (out / "evaluations").glob("*.parquet"))
    if evaluated:
        kept.append(f"evaluations of {_count(len(evaluated), 'scenario')} ({', '.join(evaluated)})")
    return kept


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")
