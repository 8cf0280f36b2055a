"""A tripwire for the multi-node tests: Ray task and actor processes may not write under OUT.

Installed in every worker process of a job as its ``worker_process_setup_hook`` (runtime env).
A Python audit hook sees every ``open`` for writing, every rename, mkdir and delete that Python
code makes (torch.save, pyarrow's Python writers, tempfile, pathlib ...); one aimed under the
guarded directory is logged to a file the TEST reads, then refused with PermissionError, so a
task that tries fails the job. (Native code that writes through C++ without Python's open is
not seen; the tests also compare OUT's final listing with exactly what the driver writes.)
"""

from __future__ import annotations

import os
import sys

WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
MUTATIONS = {
    "os.rename",
    "os.replace",
    "os.mkdir",
    "os.remove",
    "os.rmdir",
    "os.unlink",
    "shutil.rmtree",
    "os.symlink",
    "os.link",
    "os.truncate",
    "os.chmod",
}


def install() -> None:
    import ray

    guarded = os.environ.get("LIE_RAY_GUARDED")
    log_path = os.environ.get("LIE_RAY_GUARD_LOG")
    if not guarded or not log_path or ray._private.worker.global_worker.mode != ray.WORKER_MODE:
        return
    root = os.path.realpath(guarded) + os.sep

    def under_root(path) -> bool:
        if isinstance(path, int) or path is None:
            return False
        text = os.fsdecode(path)
        return (os.path.realpath(text) + os.sep).startswith(root)

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                isinstance(flags, int) and flags & WRITE_FLAGS
            )
            targets = [path] if writing else []
        elif event in MUTATIONS:
            targets = [a for a in args[:2] if isinstance(a, (str, bytes, os.PathLike))]
        else:
            return
        for target in targets:
            if under_root(target):
                with open(log_path, "a") as log:  # outside the guarded tree
                    log.write(f"{os.getpid()} {event} {os.fsdecode(target)}\n")
                raise PermissionError(f"a Ray worker process wrote under {guarded}: {target}")

    sys.addaudithook(hook)
