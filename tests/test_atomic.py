"""A crash never leaves a half-written file where a finished one belongs.

Every writer of a key, a Parquet table, the report or a manifest goes through
``lie_ray.infra.atomic``: it writes a hidden temporary beside the target and renames it into place.
These tests crash writers halfway, by exception and by killing the process outright.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lie_ray.infra import atomic
from lie_ray.infra.atomic import write_parquet
from lie_ray.keys import generate_key, load_key, save_key


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_a_writer_that_fails_halfway_leaves_the_old_file_and_no_litter(tmp_path):
    target = tmp_path / "results.parquet"
    write_parquet(pa.table({"error": [0.25]}), target)
    with pytest.raises(RuntimeError):
        with atomic.staged_file(target) as staging:
            staging.write_bytes(b"PAR1 half a table")
            raise RuntimeError("crash while writing")
    assert pq.read_table(target).column("error").to_pylist() == [0.25]
    assert list(tmp_path.iterdir()) == [target]  # the temporary is gone too


def test_a_process_killed_mid_write_never_replaces_the_finished_file(tmp_path):
    target = tmp_path / "training.parquet"
    write_parquet(pa.table({"scenario": ["Plain"]}), target)
    # A separate process stages a new table, writes half of it and dies without cleanup
    # (os._exit skips every finally block, as SIGKILL would).
    script = f"""
import os
from lie_ray.infra import atomic
with atomic.staged_file({str(target)!r}) as staging:
    staging.write_bytes(b"PAR1" + b"x" * 1000)
    os._exit(9)
"""
    assert subprocess.run([sys.executable, "-c", script]).returncode == 9
    assert pq.read_table(target).column("scenario").to_pylist() == ["Plain"]
    assert visible(tmp_path) == ["training.parquet"]  # the orphan is hidden (dot-prefixed)


def test_a_key_write_that_fails_leaves_no_key_file(tmp_path, monkeypatch):
    target = tmp_path / "keys" / "master.json"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(Exception, match="No space left"):
        save_key(generate_key(), target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_keys_are_private_from_the_first_byte(tmp_path, monkeypatch):
    modes = []
    real_fchmod = atomic.os.fchmod

    def recording_fchmod(fd, mode):
        modes.append(mode)
        real_fchmod(fd, mode)

    monkeypatch.setattr(atomic.os, "fchmod", recording_fchmod)
    target = save_key(generate_key(), tmp_path / "master.json")
    assert modes == [0o600]  # set on the temporary before any secret byte is written
    assert target.stat().st_mode & 0o777 == 0o600
    assert load_key(target).kind == "master"


def test_a_directory_is_replaced_only_when_complete(tmp_path):
    target = tmp_path / "encrypted" / "train"
    with atomic.staged_directory(target) as staging:
        (staging / "part-0.parquet").write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic.staged_directory(target) as staging:
            (staging / "part-0.parquet").write_bytes(b"new, half")
            raise RuntimeError("crash while writing shards")
    assert visible(target) == ["part-0.parquet"]
    assert (target / "part-0.parquet").read_bytes() == b"old"
    assert visible(target.parent) == ["train"]
