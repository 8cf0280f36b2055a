"""A quiet console for long jobs, with everything kept in log files.

By default the sweep's console shows lie_ray's own lines only: the phases, one line per epoch
and trial, Tune's table of trials once training ends, the summary. Everything else goes to
files under ``OUT/logs/``: the driver's log records at INFO and above, Ray's included, to
``sweep.log``; whatever else reaches the driver's own stdout and stderr (Ray's C++ lines about
actor arguments in the object store, Ray Data's warnings, the raylet's worker-count warnings)
to ``console.log`` (``quiet_console``). Workers' output is not forwarded to the driver then; it
stays in Ray's session logs (``/tmp/ray/session_latest/logs`` on each node), which the sweep
copies into ``OUT/logs/ray/`` when it ran its own Ray. ``--verbose`` (DEBUG on the ``lie_ray``
logger) brings all of it back to the console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

RAY_LOGGERS = ("ray", "ray.data", "ray.tune", "ray.train")
FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def verbose() -> bool:
    return logging.getLogger("lie_ray").isEnabledFor(logging.DEBUG)


def worker_logging_config():
    """What Ray workers log at: WARNING unless verbose (``ray.init(logging_config=...)``)."""
    import ray

    return None if verbose() else ray.LoggingConfig(log_level="WARNING")


def keep_driver_logging(handlers: list[logging.Handler], level: int) -> None:
    """Undo what ``ray.init(logging_config=...)`` does to the DRIVER's root logger (a handler
    of its own and its level), so lie_ray's lines print once, as configured by the CLI."""
    root = logging.getLogger()
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    logging.getLogger("lie_ray").setLevel(logging.DEBUG if level <= logging.DEBUG else logging.INFO)


def log_to_file(path: Path) -> logging.Handler:
    """Send the driver's INFO records (lie_ray's and Ray's) to ``path`` for the rest of the
    process; in quiet mode, hold Ray's console handlers to warnings."""
    import ray.data

    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter(FORMAT))
    logging.getLogger().addHandler(handler)
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        if not logger.propagate:  # Ray's own loggers do not reach the root's handlers
            logger.addHandler(handler)
    if not verbose():
        hold_ray_consoles()
        ray.data.DataContext.get_current().enable_progress_bars = False  # drawn, not logged
    return handler


def hold_ray_consoles() -> None:
    """Ray's console handlers in THIS process print warnings and errors only (their files,
    in Ray's session logs, keep everything)."""
    for name in RAY_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(logging.WARNING)


def quiet_trial() -> None:
    """Inside a Tune trial: hold Ray's consoles, and ask Ray Data not to announce each
    execution (its DataContext travels on to the Train datasets' coordinators)."""
    import ray.data

    hold_ray_consoles()
    context = ray.data.DataContext.get_current()
    context.print_on_execution_start = False
    context.enable_progress_bars = False


def quiet_worker() -> None:
    """Inside a Ray Train worker: hold Train's line per report ("Reporting training result
    ..."; two per epoch, each a whole metrics dict) to warnings. Train logs it under its
    module's file name, not under ``ray.``, so the worker logging config does not reach it."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray layout: the line stays, nothing else changes
        return
    logging.getLogger(context.__file__).setLevel(logging.WARNING)


_terminal: TextIO | None = None  # the user's terminal while quiet_console holds fds 1 and 2


def terminal() -> TextIO:
    """Where lines meant for the user go: the terminal's stdout, also while ``quiet_console``
    sends file descriptors 1 and 2 to a file."""
    return _terminal or sys.stdout


@contextlib.contextmanager
def quiet_console(log_dir: Path) -> Iterator[None]:
    """Unless verbose: this process's file descriptors 1 and 2 go to ``log_dir/console.log``
    for the block, and the logging handlers that wrote to them, and ``terminal()``, to the
    terminal. Ray's own processes started inside inherit the file. What Ray's C++ core and
    its Python loggers write straight to stderr (``core_worker.cc`` lines about Ray Data's
    actor arguments, ray#53727; Ray Data's progress-bar and datasink warnings; the token
    authentication notice) has no switch of its own; at the descriptor it is caught whole,
    and kept."""
    global _terminal
    if verbose():
        yield
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    streams = {fd: os.fdopen(os.dup(saved[fd]), "w", buffering=1) for fd in (1, 2)}
    moved = []
    for handler in logging.getLogger().handlers:
        fd = _stream_fd(handler)
        if fd in streams:
            moved.append((handler, handler.setStream(streams[fd])))
    target = os.open(log_dir / "console.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(target, 1)
    os.dup2(target, 2)
    os.close(target)
    _terminal = streams[1]
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, original in saved.items():
            os.dup2(original, fd)
            os.close(original)
        for handler, stream in moved:
            handler.setStream(stream)
        for stream in streams.values():
            stream.close()
        _terminal = None


def _stream_fd(handler: logging.Handler) -> int | None:
    if isinstance(handler, logging.FileHandler) or not isinstance(handler, logging.StreamHandler):
        return None
    try:
        return handler.stream.fileno()
    except (AttributeError, OSError, ValueError):  # a StringIO, a closed stream
        return None


def keep_session_logs(log_dir: Path) -> None:
    """Copy the embedded Ray session's log files (workers', actors', the raylet's) into
    ``log_dir/ray``: the output a quiet console did not show, kept with the run. Only files;
    a cluster's logs stay on its nodes (``ray logs``)."""
    import ray

    try:
        source = Path(ray._private.worker._global_node.get_session_dir_path()) / "logs"
    except AttributeError:  # not this process's own Ray
        return
    target = log_dir / "ray"
    target.mkdir(parents=True, exist_ok=True)
    for path in source.iterdir():
        if path.is_file():
            with contextlib.suppress(OSError):
                shutil.copyfile(path, target / path.name)
