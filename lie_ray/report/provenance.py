"""The report's one statement of where its tables came from: code, libraries, data, keys.

Read from the run records the tables carry (``lie_ray.infra.provenance``), never from the
running process: re-rendering an old run's report names the code that made its tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from lie_ray.infra import provenance


def section(directory: str | Path, table: str = "results.parquet") -> str:
    """``## Provenance`` for the tables in ``directory`` (empty for a table without a
    record, e.g. one written by an older lie_ray)."""
    path = Path(directory) / table
    if not path.is_file():
        return ""
    record = provenance.record_of(pq.read_schema(path))
    if record is None:
        return ""
    lines = ["", "## Provenance", "", f"- Code: {code_line(record['code'])}."]
    data = record.get("data") or {}
    if data.get("files"):
        limits = ", ".join(
            f"{k} {v}" for k, v in data.items() if k not in ("directory", "files") and v is not None
        )
        lines.append(
            f"- Data: {data['directory']} ({len(data['files'])} files, SHA-256 of "
            f"their digests {provenance.digest(data['files'])[:16]}"
            + (f"; {limits}" if limits else "")
            + ")."
        )
    training = record.get("training") or {}
    if training:
        keys = sorted({r["key_fingerprint"] for r in training.values() if r["key_fingerprint"]})
        devices = sorted({r.get("device") for r in training.values() if r.get("device")})
        lines.append(
            "- Trained runs: "
            + ", ".join(f"{name} `{r['run_id'][:12]}`" for name, r in training.items())
            + "; key "
            + (", ".join(f"`{k}`" for k in keys) or "none")
            + " (fingerprint)"
            + (f"; device {', '.join(devices)}" if devices else "")
            + "."
        )
    if record.get("key_fingerprint"):
        lines.append(f"- Key: `{record['key_fingerprint']}` (fingerprint).")
    if record.get("attacks"):
        lines.append(f"- Attacks: {attacks_line(record['attacks'])}.")
    lines.append(f"- Settings: `{json.dumps(record.get('settings', {}), sort_keys=True)}`.")
    return "\n".join(lines) + "\n"


def code_line(code: dict) -> str:
    versions = code.get("versions", {})
    commit = code.get("commit")
    where = (
        f"commit {commit[:12]}" + (" with local changes" if code.get("dirty") else "")
        if commit
        else "no git checkout"
    )
    libraries = ", ".join(
        f"{name} {version}" for name, version in versions.items() if name != "lie_ray" and version
    )
    return (
        f"lie_ray {versions.get('lie_ray') or '?'} ({where}); {libraries}; "
        f"Python {code.get('python', '?')}"
    )


def attacks_line(attacks: dict) -> str:
    """The attacks' budgets in words, as the evaluation recorded them (``summary``); a record
    written before it held them shows its budgets as recorded."""
    if attacks.get("summary"):
        return attacks["summary"]
    return "as recorded, " + json.dumps(attacks, sort_keys=True)
