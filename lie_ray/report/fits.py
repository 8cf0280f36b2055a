"""What the keyless attacker's fits reached, from the results' run record (``fits``, written
by the evaluation: ``lie_ray.attacks.catalogue.keyless_fit``): a bypass or a key search that
broke nothing says little unless it is known to have fitted. A bypass whose held-out
agreement with the deployed pipeline is under ``AGREEMENT_TARGET`` is named beside the
headline, so a keyless figure is never read as robustness when the stand-in was wrong."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from lie_ray.infra import provenance
from lie_ray.report.markdown import markdown_table

AGREEMENT_TARGET = 0.9
BYPASS, SEARCH = "bypass", "key search"  # the figures' kinds (keyless_fit's record)


def of_kind(attacks: dict[str, dict], kind: str) -> dict:
    """A scenario's figures of one kind (the record keys them by attack name)."""
    return next((f for f in attacks.values() if f.get("kind") == kind), {})


def recorded(directory: str | Path, table: str = "results.parquet") -> dict[str, dict]:
    """The fits by scenario and attack, as the run record holds them ({} without one)."""
    path = Path(directory) / table
    if not path.is_file():
        return {}
    record = provenance.record_of(pq.read_schema(path)) or {}
    return record.get("fits") or {}


def headline_notes(fits: dict[str, dict]) -> dict[str, str]:
    """Per scenario, a note beside its headline where the bypass fitted under the target."""
    notes = {}
    for scenario, attacks in fits.items():
        agreement = of_kind(attacks, BYPASS).get("agreement")
        if agreement is not None and agreement < AGREEMENT_TARGET:
            notes[scenario] = (
                f" (the bypass agreed with the pipeline on {agreement:.2f} of the attacker's "
                f"held-out images, under {AGREEMENT_TARGET}: its keyless figure may be "
                "low; see The keyless attacker's fits)"
            )
    return notes


def figure(value, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def section(fits: dict[str, dict]) -> str:
    """The table of every scenario's bypass and key search."""
    if not fits:
        return ""
    header = [
        "scenario",
        "bypass used",
        "agreement",
        "accuracy",
        "agreement per variant (prob. / labels / from search)",
        "gradient cosine",
        "key read off",
        "key search accuracy",
        "key found",
    ]
    body = []
    for scenario, attacks in fits.items():
        bypass, search = of_kind(attacks, BYPASS), of_kind(attacks, SEARCH)
        variants = bypass.get("variants") or {}
        body.append(
            [
                scenario,
                bypass.get("chosen", "-"),
                figure(bypass.get("agreement")),
                figure(bypass.get("accuracy")),
                " / ".join(
                    figure((variants.get(v) or {}).get("agreement"))
                    for v in ("probabilities", "labels", "from-search")
                ),
                figure(bypass.get("gradient_cosine")),
                figure(bypass.get("key_share_read")),
                figure(search.get("accuracy")),
                figure(search.get("key_share")),
            ]
        )
    first = of_kind(next(iter(fits.values())), BYPASS)
    return (
        "\n## The keyless attacker's fits\n\n"
        "The bypass (a stand-in with the keyed transform's own structure, its key relaxed to "
        f"continuous parameters) fitted on {first.get('images', '?')} images of the "
        f"attacker's own in {first.get('steps', '?')} steps per variant: to the pipeline's "
        "output probabilities, to the images' labels, and started from the key the search "
        "found. Agreement (top-1, with the deployed pipeline) and accuracy are measured on "
        f"{first.get('judged', '?')} further held-out images of the attacker's, and the "
        "variant with the best agreement is the one `pba` attacks through: attacker-side "
        "figures only. Scored afterwards with the true key, for this table alone: the "
        "cosine between the stand-in's input gradient and the key holder's, and the share "
        "of the key's entries read off the stand-in (`key read off`) or found by the key "
        "search (`key found`), which keeps the key under which the network's cross-entropy "
        "on the attacker's images is lowest (its accuracy there is the table's). A bypass "
        "under "
        f"{AGREEMENT_TARGET} agreement is named beside the headline.\n\n"
        + markdown_table(header, body)
    )
