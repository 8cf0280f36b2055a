"""The family table of ``report.md``: every transform side by side under the same attacks.

One row per scenario of a run that trained more than one transform (``--preset family``):
transform, variant, block size, key space (log2, as the reference draws keys), clean test
error, and at every epsilon the paper's protocol (``pgd``: plain autograd through the pipeline
as written; the TRUE gradient for transforms that have one) beside the worst case over every
evaluation. Built from ``training.parquet`` and ``results.parquet`` alone.
"""

from __future__ import annotations

import pyarrow as pa

from lie_ray.attacks.spec import WORST_CASE, WORST_CASE_KEYLESS, WORST_CASE_LEAKED
from lie_ray.infra.tables import FAMILY_COLUMNS
from lie_ray.keys import Key
from lie_ray.report.catalogue import Catalogue
from lie_ray.report.markdown import cell, markdown_table
from lie_ray.transforms import build


def key_space_log2(name: str, block_size: int, variant: str) -> float:
    """The key space does not depend on the key: measure it on an all-zero master."""
    return build(
        name, Key("master", bytes(32), block_size), block_size, variant=variant or None
    ).key_space_log2


def family_section(
    rows: list, training: pa.Table | None, catalogue: Catalogue | None = None
) -> str:
    """Markdown for the family table, or "" when the run holds fewer than two transforms
    (or ``training``, the training table, is absent or older than the family's columns)."""
    if training is None or not set(FAMILY_COLUMNS) <= set(training.column_names):
        return ""
    trained = training.select(list(FAMILY_COLUMNS)).to_pylist()
    if len({r["transform"] for r in trained if r["encrypted"]}) < 2:
        return ""
    by_key = {(r.scenario, r.evaluation, round(r.epsilon, 9)): r.error for r in rows}
    protocol = (catalogue or Catalogue.builtin()).protocol()
    epsilons = sorted({r.epsilon for r in rows if r.evaluation == protocol and r.epsilon > 0})
    header = ["scenario", "transform", "variant", "M", "key space (log2)", "clean test"]
    for eps in epsilons:
        header += [
            f"{protocol} {eps:.4f}",
            f"keyless {eps:.4f}",
            f"leaked {eps:.4f}",
            f"worst {eps:.4f}",
        ]
    body = []
    for r in trained:
        space = "-"
        if r["encrypted"]:
            bits = key_space_log2(r["transform"], r["transform_block_size"], r["transform_variant"])
            space = f"{bits:.1f}"
        cells = [
            r["scenario"],
            r["transform"],
            r["transform_variant"] or "-",
            str(r["transform_block_size"] or "-"),
            space,
            cell(by_key.get((r["scenario"], "test", 0.0))),
        ]
        for eps in epsilons:
            cells += [
                cell(by_key.get((r["scenario"], name, round(eps, 9))))
                for name in (protocol, WORST_CASE_KEYLESS, WORST_CASE_LEAKED, WORST_CASE)
            ]
        body.append(cells)
    return (
        "\n## The transform family under the same attacks\n\n"
        "Error rates (lower is better). `pgd` is the paper's protocol: plain autograd "
        "through the pipeline as written, which is the true gradient for Shuffle, NP, PE and "
        "EtC and zero for LE, ELE and FFX; `keyless` is the worst case per image of an "
        "attacker with the weights but no key and no leaked pair (EOT, transfer, Square, the "
        "bypass, the key search), `leaked` of one who also holds leaked pairs "
        "(recovered-key), `worst` of one who holds the key too "
        "(every attack on the plain image: the paper's readings, BPDA, AutoAttack and the "
        "keyless ones). Key spaces as each "
        "reference draws its keys (TRANSFORMS.md).\n\n" + markdown_table(header, body)
    )
