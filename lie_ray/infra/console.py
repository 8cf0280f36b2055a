"""A quiet console for long jobs, with everything kept in log files.

By default the console shows lie_ray's own lines (phases, one line per finished epoch and
trial, the summary), Tune's status table and Ray's warnings; Ray's INFO chatter (Ray Data
execution plans, Train's checkpoint reports) is left out. ``--verbose`` (DEBUG on the
``lie_ray`` logger) brings it all back. Whatever the console shows, the driver's log records at
INFO and above, Ray's included, go to ``OUT/logs/sweep.log``; workers' output stays in Ray's
session logs (``/tmp/ray/session_latest/logs`` on each node).
"""

from __future__ import annotations

import logging
from pathlib import Path

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
