"""What produced a result: the code, the libraries, the data, as plain JSON-able records.

Every table lie_ray writes carries a run record (``lie_ray.training.record`` builds the
training one; evaluation and privacy add theirs) in its Parquet schema metadata under
``RECORD_KEY``, and every checkpoint carries its scenario's in ``meta.json``. Records hold
names, numbers, digests and key FINGERPRINTS, never a key.

``identity`` digests the part of a record that decides a result (not the code version or the
machine): a resumed or repeated job reuses finished work only when it matches.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

RECORD_KEY = b"lie_ray.record"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the checkout, when run from one
LIBRARIES = ("torch", "torchvision", "ray", "torchattacks", "numpy", "pyarrow")


def digest(value: Any) -> str:
    """SHA-256 of a JSON-able value, canonically encoded (sorted keys)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def identity(record: Mapping[str, Any], ignored: tuple[str, ...] = ("code",)) -> str:
    """The digest of what decides a result: the record without ``ignored`` parts."""
    return digest({k: v for k, v in record.items() if k not in ignored})


@functools.lru_cache(maxsize=1)
def code() -> dict[str, Any]:
    """lie_ray's version and git commit (``dirty`` when the checkout has local changes),
    Python's and the libraries' versions: the same for every record of one process."""
    versions = {}
    for name in ("lie_ray", *LIBRARIES):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {"versions": versions, "python": platform.python_version(), **git_commit()}


def machine() -> dict[str, Any]:
    """Where a timing was taken: the CPU model, its cores, and the GPUs torch sees (when the
    process has loaded torch), so figures from different machines are compared knowingly."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            model = next(
                (line.split(":", 1)[1].strip() for line in info if line.startswith("model name")),
                model,
            )
    except OSError:
        pass
    torch = sys.modules.get("torch")
    gpus = (
        [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        if torch is not None and torch.cuda.is_available()
        else []
    )
    return {"cpu": model, "cores": os.cpu_count(), "gpus": gpus}


def git_commit() -> dict[str, Any]:
    """The checkout's commit, when lie_ray runs from a git checkout with git installed."""
    if not (PACKAGE_ROOT / ".git").exists():
        return {"commit": None, "dirty": None}
    try:
        head = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        status = subprocess.run(
            ["git", "-C", str(PACKAGE_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": head.stdout.strip(), "dirty": bool(status.stdout.strip())}


def files_record(directory: Path, names: list[str], **limits: int | None) -> dict[str, Any]:
    """A dataset as a job used it: its directory, the SHA-256 of each of its files that the
    job reads, and the limits it read them under."""
    root = Path(directory).resolve()
    files = {
        name: file_digest(str(root / name), *_stamp(root / name))
        for name in names
        if (root / name).is_file()
    }
    return {"directory": str(root), "files": files, **limits}


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@functools.lru_cache(maxsize=256)
def file_digest(path: str, size: int, mtime_ns: int) -> str:
    """A file's SHA-256, computed once per (path, size, mtime) in a process."""
    return sha256(path)


def sha256(path: str | Path) -> str:
    """The file's SHA-256, read now: never a cached one (``lie-ray verify`` must see a file
    changed since, whatever its size and time stamp say)."""
    sha = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def with_record(table: pa.Table, record: Mapping[str, Any]) -> pa.Table:
    """``table`` carrying ``record`` in its schema metadata (Parquet keeps it)."""
    metadata = dict(table.schema.metadata or {})
    metadata[RECORD_KEY] = json.dumps(record, sort_keys=True, default=str).encode()
    return table.replace_schema_metadata(metadata)


def record_of(schema: pa.Schema) -> dict[str, Any] | None:
    """The run record a table's schema carries, or None for a table without one."""
    raw = (schema.metadata or {}).get(RECORD_KEY)
    return json.loads(raw) if raw else None
