"""Signals the way people send them, to commands on the embedded Ray they start themselves.

Ctrl-C in a terminal reaches the whole foreground process group, and a batch scheduler's
SIGTERM (``kill -TERM -- -PGID``) the whole group too; before, Ray's own processes sat in that
group and died under the command (a Ctrl-C'd sweep hung, a SIGTERM'd train died in Ray's C++
code). Here the command runs in a real pseudo-terminal (pexpect) or its own process group
(``os.killpg``); it must stop within 15 s with its one line and 130/143, and ``--resume`` (or,
for privacy, running it again) must then complete.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pexpect
import pyarrow.parquet as pq
from conftest import LIGHT_EVAL, REPO_ROOT
from test_commands import LIE_RAY, USER_ENV

STOP_WITHIN = 15  # seconds from the signal to the command's exit
SLICE = ["--train-limit", "256", "--test-limit", "128", "--width", "4", "--batch-size", "64"]


def in_terminal(args: list[str]) -> pexpect.spawn:
    return pexpect.spawn(
        args[0],
        args[1:],
        cwd=str(REPO_ROOT),
        env=USER_ENV,
        encoding="utf-8",
        timeout=600,
        dimensions=(50, 200),
    )


def ctrl_c_after(child: pexpect.spawn, pattern: str) -> tuple[float, str, int]:
    """Wait for ``pattern``, press Ctrl-C; return (seconds to exit, all output, exit status)."""
    child.expect(pattern)
    seen = child.before + child.after
    child.sendintr()  # the terminal's ^C: SIGINT to the whole foreground process group
    pressed = time.monotonic()
    child.expect(pexpect.EOF, timeout=120)
    seconds = time.monotonic() - pressed
    child.close()
    return seconds, seen + child.before, child.exitstatus


def interrupted_lines(output: str) -> list[str]:
    """Our one line, wherever it starts: in a terminal it may follow the echoed ^C."""
    return [match.strip() for match in re.findall(r"interrupted by SIG\w+: [^\r\n\x1b]*", output)]


def test_ctrl_c_in_a_terminal_stops_the_sweep_then_evaluate_and_resume_completes(
    cifar_dir, tmp_path
):
    out = tmp_path / "sweep"
    sweep = [
        sys.executable,
        "-m",
        "lie_ray.sweep",
        "--preset",
        "smoke",
        "--data",
        str(cifar_dir),
        "--out",
        str(out),
        "--scenarios",
        "Plain,Encrypted",
        "--epochs",
        "2",
        *SLICE,
        *LIGHT_EVAL,
        "--no-privacy",
    ]
    seconds, output, status = ctrl_c_after(in_terminal(sweep), r"(Plain|Encrypted): epoch 1/2")
    print(f"sweep: Ctrl-C in a pty -> exit {status} after {seconds:.1f} s")  # shown by -rP
    assert status == 130, output[-4000:]
    assert seconds < STOP_WITHIN, (seconds, output[-3000:])
    assert interrupted_lines(output) == [
        f"interrupted by SIGINT: kept in {out}: the master key, the encrypted shards, the "
        f"checkpoints of 2 scenarios; no table was written from unfinished work; run the same "
        "command again with --resume to continue"
    ], output[-3000:]
    assert not (out / "training.parquet").exists()

    resumed = subprocess.run(
        [*sweep, "--resume"],
        cwd=REPO_ROOT,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    training = {r["scenario"]: r for r in pq.read_table(out / "training.parquet").to_pylist()}
    assert {(name, r["epochs"]) for name, r in training.items()} == {("Plain", 2), ("Encrypted", 2)}
    # The scenario whose epoch line we saw does not train epoch 1 again: it restarts from that
    # checkpoint (Ray Train's controller had often not recorded it before the signal), or
    # finds epoch 2 already done where that finished before the signal took hold.
    (signalled,) = re.findall(r"(Plain|Encrypted): epoch 1/2", output)[:1]
    assert_not_retrained(signalled, training[signalled], resumed.stdout + resumed.stderr, epochs=2)

    # 'lie-ray evaluate' in the terminal, Ctrl-C once it attacks, then --resume.
    again = tmp_path / "again"
    evaluate = [
        LIE_RAY,
        "evaluate",
        "--runs",
        str(out),
        "--out",
        str(again),
        "--data",
        str(cifar_dir),
        "--key",
        str(out / "keys" / "master.json"),
        "--preset",
        "smoke",
        *LIGHT_EVAL,
    ]
    seconds, output, status = ctrl_c_after(in_terminal(evaluate), r"evaluating Plain")
    print(f"evaluate: Ctrl-C in a pty -> exit {status} after {seconds:.1f} s")
    assert (status, seconds < STOP_WITHIN) == (130, True), (seconds, output[-4000:])
    assert len(interrupted_lines(output)) == 1 and "--resume" in interrupted_lines(output)[0]
    assert not (again / "results.parquet").exists()
    finished = subprocess.run(
        [*evaluate, "--resume"],
        cwd=REPO_ROOT,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert finished.returncode == 0, (finished.stdout + finished.stderr)[-4000:]
    assert set(pq.read_table(again / "results.parquet").column("scenario").to_pylist()) == {
        "Plain",
        "Encrypted",
    }


def assert_not_retrained(scenario: str, row: dict, resumed_output: str, epochs: int) -> None:
    """After a signal that followed ``scenario``'s epoch-1 report, --resume trains only what
    is left: from the newest checkpoint (epoch 1, or a later one written before the signal
    took hold), or nothing at all. ``resumed_output``: all the command printed (its progress
    lines are log lines, on stderr)."""
    assert f"{scenario}: epoch {epochs}/{epochs} done" in resumed_output or (
        f"{scenario}: already trained for {epochs} epochs" in resumed_output
    ), resumed_output[-3000:]  # the output read is the one that holds the progress lines
    assert f"{scenario}: epoch 1/{epochs} done" not in resumed_output, resumed_output[-3000:]
    assert (
        row["resumed_from_epoch"] >= 1
        or f"{scenario}: already trained for {epochs} epochs" in resumed_output
    ), (row, resumed_output[-3000:])


def in_own_group(args: list[str]) -> subprocess.Popen:
    """The command as a scheduler starts it: the leader of a new process group."""
    return subprocess.Popen(
        args,
        cwd=REPO_ROOT,
        env=USER_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def killpg_after(process: subprocess.Popen, text: str, signum: int) -> tuple[float, str]:
    seen = []
    for line in process.stdout:  # blocks until the command prints; no sleeping
        seen.append(line)
        if text in line:
            os.killpg(process.pid, signum)  # the whole group, as 'kill -TERM -- -PGID'
            break
    sent = time.monotonic()
    seen += process.stdout.readlines()
    process.wait(timeout=120)
    return time.monotonic() - sent, "".join(seen)


def test_sigterm_to_the_process_group_stops_train_and_privacy(cifar_dir, tmp_path):
    key = tmp_path / "key.json"
    subprocess.run(
        [LIE_RAY, "keygen", "--out", str(key)], check=True, env=USER_ENV, capture_output=True
    )
    out = tmp_path / "train"
    train = [
        LIE_RAY,
        "train",
        "--preset",
        "smoke",
        "--data",
        str(cifar_dir),
        "--key",
        str(key),
        "--out",
        str(out),
        "--scenarios",
        "Plain",
        "--epochs",
        "3",
        *SLICE,
    ]
    process = in_own_group(train)
    seconds, output = killpg_after(process, "Plain: epoch 1/3 done", signal.SIGTERM)
    print(f"train: SIGTERM to the group -> exit {process.returncode} after {seconds:.1f} s")
    assert (process.returncode, seconds < STOP_WITHIN) == (143, True), (seconds, output[-4000:])
    assert "Failed to connect to GCS" not in output, output[-4000:]
    assert interrupted_lines(output) == [
        f"interrupted by SIGTERM: kept in {out}: the checkpoints of 1 scenario; no table was "
        "written from unfinished work; run the same command again with --resume to continue"
    ], output[-3000:]
    resumed = subprocess.run(
        [*train, "--resume"],
        cwd=REPO_ROOT,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    (row,) = pq.read_table(out / "training.parquet").to_pylist()
    assert row["epochs"] == 3, row
    assert_not_retrained("Plain", row, resumed.stdout + resumed.stderr, epochs=3)

    privacy_out = tmp_path / "privacy"
    privacy = [
        LIE_RAY,
        "privacy",
        "--preset",
        "smoke",
        "--data",
        str(cifar_dir),
        "--key",
        str(key),
        "--out",
        str(privacy_out),
        "--transforms",
        "le",
    ]
    process = in_own_group(privacy)
    seconds, output = killpg_after(process, "exact privacy attacks on le done", signal.SIGTERM)
    print(f"privacy: SIGTERM to the group -> exit {process.returncode} after {seconds:.1f} s")
    assert (process.returncode, seconds < STOP_WITHIN) == (143, True), (seconds, output[-4000:])
    assert interrupted_lines(output) == [
        "interrupted by SIGTERM: nothing was kept; no table was written from unfinished work; "
        "run the same command again to start over"
    ], output[-3000:]
    assert not (privacy_out / "privacy.parquet").exists()
