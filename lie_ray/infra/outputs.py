"""Is an output location usable? Checked by every command before Ray starts.

Without this, a bad ``--out`` surfaced only when the first file was written, minutes into a
job and as a traceback (``FileExistsError`` for a regular file, ``NotADirectoryError`` or
``FileNotFoundError`` under one). The check creates nothing: a rejected command leaves no
trace, and a good one makes its directories when it first writes. Permission bits do not
say everything (root passes ``os.access`` on ``/proc``, where nothing can be made; a
read-only mount, a full disk), so the nearest existing ancestor is also probed: a uniquely
named directory is made in it and removed at once.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lie_ray.errors import LieRayError


def check_output_dir(path: str | os.PathLike, option: str = "--out") -> None:
    """``path`` must be a writable directory, or one that can be made (its nearest existing
    ancestor is a writable directory)."""
    target = Path(path)
    if os.path.lexists(target) and not target.is_dir():
        raise LieRayError(
            f"{option} {target} {_what(target)}, not a directory: pass a "
            f"directory path instead (e.g. {target}.d), or move the file away"
        )
    _check_writable_ancestor(target, option, f"{option} {target}")


def check_output_file(path: str | os.PathLike, option: str, example: str) -> None:
    """``path`` must be a file to write: not a directory, in a directory that exists or can be
    made. ``example`` names a file inside a directory, for the fix."""
    target = Path(path)
    if target.is_dir():
        raise LieRayError(
            f"{option} {target} is a directory: pass a file path, e.g. {option} {target / example}"
        )
    _check_writable_ancestor(target.parent, option, f"{option} {target}")


def check_storage(storage: str | None) -> None:
    """``--storage``: a local path (or ``file://`` URI) is an output directory like ``--out``;
    remote URIs (``s3://...``) are checked by their own client when first used."""
    if storage is None:
        return
    if storage.startswith("file://"):
        check_output_dir(storage[len("file://") :], "--storage")
    elif "://" not in storage:
        check_output_dir(storage, "--storage")


def _check_writable_ancestor(directory: Path, option: str, named: str) -> None:
    existing = directory
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise LieRayError(
            f"{named} cannot be created: {existing} {_what(existing)}, not a "
            f"directory; choose another {option} path, or move that file away"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        whose = (
            "is not writable"
            if existing == directory
            else f"cannot be created: {existing} is not writable"
        )
        raise LieRayError(
            f"{named} {whose} by this user: choose another {option} path, or "
            f"grant write access (e.g. chmod u+w {existing})"
        )
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".lie-ray-probe-", dir=existing))
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise LieRayError(
            f"{named} cannot be written: making anything in {existing} fails "
            f"({reason}); choose another {option} path"
        ) from None


def _what(path: Path) -> str:
    if path.is_symlink() and not path.exists():
        return "is a broken symbolic link"
    return "is a file" if path.is_file() else "exists"
