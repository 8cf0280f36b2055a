"""The images that decided each worst case, kept so that anyone holding the model can check the
figures again (RobustBench accepts an outside evaluation so: as the adversarial images, which
re-classified bound robust accuracy from above).

Per scenario one Parquet file, ``OUT/adversarial/<scenario>.parquet``: a row per (worst case,
epsilon, image) that an attack broke, with the image's id and label, the attack and epsilon
that broke it, the prediction it drew, its ``space`` (``plain``: what the deployed pipeline
takes; ``cipher``: the ciphertext the channel attacker sent the network) and the image, 8-bit
HWC bytes exactly as deployed. Where nothing broke an image, or it was misclassified already,
the plain test image decided: the data keeps it (the run record holds its files' SHA-256).
The run record lists each file with its SHA-256 (``record["adversarial"]``), which
``lie_ray.evaluation.verify`` checks before it reads one.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lie_ray.infra.atomic import write_parquet
from lie_ray.infra.provenance import sha256

DIRECTORY = "adversarial"
IMAGE_COLUMNS = ("image", "space")  # what the actors hand back beside the example rows
KEPT = (
    "evaluation",
    "epsilon",
    "id",
    "label",
    "adv_pred",
    "broken_by",
    "broken_at",
    "space",
    "image",
)


def without_images(examples: pa.Table) -> pa.Table:
    """The example rows as ``examples.parquet`` holds them: the images live in their files."""
    return examples.drop_columns([c for c in IMAGE_COLUMNS if c in examples.column_names])


def decided_rows(part: pa.Table) -> pa.Table:
    """A scenario's rows whose image an attack made (the worst cases' broken images)."""
    made = pc.greater(pc.binary_length(part["image"]), 0)
    return part.filter(made).select(list(KEPT))


def write_images(parts: dict[str, pa.Table], out: Path) -> dict[str, dict]:
    """Each scenario's decided images to ``OUT/adversarial/<scenario>.parquet`` (whole or not
    at all); returns the run record's entry: per scenario its file (relative to OUT), its
    SHA-256 and how many images it holds."""
    files = {}
    for name in sorted(parts):
        rows = decided_rows(parts[name])
        relative = f"{DIRECTORY}/{name}.parquet"
        write_parquet(rows, out / relative)
        files[name] = {"file": relative, "sha256": sha256(out / relative), "images": rows.num_rows}
    return files
