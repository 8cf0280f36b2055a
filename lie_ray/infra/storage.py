"""Storage every node reaches: a local path or a URI (``s3://bucket/prefix?region=...``).

Everything written from several nodes of a cluster (Tune experiment, Train checkpoints,
encrypted shards, evaluation parts) goes through pyarrow's filesystems, so the same code writes
to a local directory on a laptop and to S3 (or GCS, or any fsspec-backed store) on a cluster.

A URI may carry pyarrow options after ``?`` (``region``, ``endpoint_override``, ``scheme``):
``join`` keeps them at the end, where ``FileSystem.from_uri`` expects them. Credentials never
belong in a URI (URIs are logged and land in tables): ``check_uri`` refuses them, and pyarrow
reads them from the environment (``AWS_ACCESS_KEY_ID`` ...), the instance profile or the
job's runtime environment instead.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pyarrow as pa
import pyarrow.fs
import pyarrow.parquet as pq

from lie_ray.errors import LieRayError

SECRET_OPTIONS = ("access_key", "secret_key", "session_token")


def is_uri(location: str | os.PathLike) -> bool:
    return "://" in str(location)


def check_uri(location: str, what: str = "--storage") -> str:
    """A usable location: a local path is made absolute, a URI must parse and hold no secret."""
    if not is_uri(location):
        return str(Path(location).expanduser().resolve())
    query = parse_qs(urlsplit(location).query)
    secrets = sorted(set(SECRET_OPTIONS) & set(query))
    if secrets:
        raise LieRayError(
            f"{what} must not carry credentials ({', '.join(secrets)}): URIs are "
            "logged and stored in tables; pass them as AWS_ACCESS_KEY_ID / "
            "AWS_SECRET_ACCESS_KEY in the environment instead"
        )
    try:
        pyarrow.fs.FileSystem.from_uri(location)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as err:
        raise LieRayError(
            f"{what} {location!r} is not a usable location ({err}): pass a local "
            "path or a URI such as s3://bucket/prefix?region=us-east-1"
        ) from None
    return location


def join(location: str | os.PathLike, *parts: str) -> str:
    """``location/part/...``, keeping a URI's ``?options`` at the end."""
    text = str(location)
    if not is_uri(text):
        return str(Path(text, *parts))
    base, _, query = text.partition("?")
    joined = "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])
    return f"{joined}?{query}" if query else joined


def resolve(location: str | os.PathLike) -> tuple[pyarrow.fs.FileSystem, str]:
    """The filesystem and the path on it for a local path or a URI."""
    text = str(location)
    if not is_uri(text):
        return pyarrow.fs.LocalFileSystem(), str(Path(text).resolve())
    return pyarrow.fs.FileSystem.from_uri(text)


def to_location(base: str | os.PathLike, fs_path: str) -> str:
    """Turn a path on ``base``'s filesystem (what Ray reports, e.g. a checkpoint's ``path``:
    the bucket and key without scheme or options) back into a location under ``base``."""
    if not is_uri(base) or is_uri(fs_path):
        return fs_path
    _, root = resolve(base)
    if not fs_path.startswith(root.rstrip("/") + "/"):
        raise LieRayError(f"{fs_path} is not under the storage {base}")
    return join(base, fs_path[len(root.rstrip("/")) + 1 :])


def exists(location: str | os.PathLike) -> bool:
    filesystem, path = resolve(location)
    return filesystem.get_file_info(path).type != pyarrow.fs.FileType.NotFound


def read_bytes(location: str | os.PathLike) -> bytes:
    filesystem, path = resolve(location)
    with filesystem.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write a whole object. Local files go through ``atomic`` (write, then rename); an object
    store makes a PUT visible only once complete, so readers never see half an object."""
    if not is_uri(location):
        from lie_ray.infra import atomic

        atomic.write_bytes(location, data)
        return
    filesystem, path = resolve(location)
    with filesystem.open_output_stream(path) as stream:
        stream.write(data)


def write_table(table: pa.Table, location: str | os.PathLike) -> None:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    write_bytes(location, sink.getvalue())


def read_table(location: str | os.PathLike) -> pa.Table:
    return pq.read_table(io.BytesIO(read_bytes(location)))


def read_schema(location: str | os.PathLike) -> pa.Schema:
    filesystem, path = resolve(location)
    with filesystem.open_input_file(path) as handle:
        return pq.read_schema(handle)


def delete(location: str | os.PathLike) -> None:
    """Remove a file or a directory tree if it exists."""
    filesystem, path = resolve(location)
    kind = filesystem.get_file_info(path).type
    if kind == pyarrow.fs.FileType.Directory:
        filesystem.delete_dir(path)
    elif kind == pyarrow.fs.FileType.File:
        filesystem.delete_file(path)
