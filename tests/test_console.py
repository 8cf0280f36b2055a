"""The quiet console: inside ``quiet_console`` only lie_ray's log lines and what is written to
``terminal()`` reach the user; whatever else writes to the process's stdout or stderr (Ray's
C++ core, Ray's own loggers, a stray print) lands in ``console.log``; afterwards both
descriptors are the terminal's again. Run in a subprocess, as the sweep runs it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    from pathlib import Path
    from lie_ray.app.cli import configure_logging
    from lie_ray.infra.console import quiet_console, terminal

    configure_logging(verbose={verbose})
    ray_logger = logging.getLogger("ray.data")  # as Ray sets its loggers up: own handler
    ray_logger.propagate = False
    ray_logger.addHandler(logging.StreamHandler(sys.stderr))
    with quiet_console(Path(sys.argv[1])):
        logging.getLogger("lie_ray").info("ours: a phase done")
        os.write(2, b"[E core_worker.cc] C++ straight to the descriptor\\n")
        print("a stray print")
        ray_logger.warning("Progress bars disabled")
        print("Tune's table", file=terminal())
    logging.getLogger("lie_ray").info("ours: after")
    print("the summary")
    """
)


def run(tmp_path, verbose: bool) -> tuple[str, str]:
    logs = tmp_path / "logs"
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(verbose=verbose), str(logs)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    kept = (logs / "console.log").read_text() if (logs / "console.log").exists() else ""
    return result.stdout + result.stderr, kept


def test_quiet_console_shows_ours_and_keeps_the_rest_in_a_file(tmp_path):
    shown, kept = run(tmp_path, verbose=False)
    for line in ("ours: a phase done", "Tune's table", "ours: after", "the summary"):
        assert line in shown and line not in kept, line
    for line in ("core_worker.cc", "a stray print", "Progress bars disabled"):
        assert line in kept and line not in shown, line


def test_verbose_console_shows_everything_and_keeps_no_file(tmp_path):
    shown, kept = run(tmp_path, verbose=True)
    for line in ("ours: a phase done", "core_worker.cc", "a stray print", "Progress bars"):
        assert line in shown, line
    assert kept == ""
