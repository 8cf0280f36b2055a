"""How the report names, orders, groups and colours the evaluations, from the results' run
record (``record["attacks"]["catalogue"]``: each attack's ``AttackSpec.shown()``, written when
it ran), so a report renders the same without an attack's package installed. Results written
before the record held it fall back to lie_ray's own attacks (``lie_ray.attacks.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from lie_ray.attacks import registry
from lie_ray.attacks.spec import (
    PLAIN_IMAGE_TIERS,
    WORST_CASE,
    WORST_CASE_CHANNEL,
    WORST_CASE_KEYLESS,
    WORST_CASE_LEAKED,
    WORST_CASES,
)
from lie_ray.infra import provenance

CLEAN_EVALUATIONS = ("test", "train")


@dataclass(frozen=True)
class Shown:
    """One evaluation as the report shows it (the fields of ``AttackSpec.shown``)."""

    name: str
    tier: str
    role: str
    label: str
    colour: str
    box: str | None
    cascade_rank: float
    encrypted_only: bool
    checks: str | None = None
    reference: str | None = None
    description: str = ""


class Catalogue:
    """The evaluations of one set of results, in the order lie_ray declares them."""

    def __init__(self, shown: dict[str, Shown]):
        self.shown = shown

    @classmethod
    def builtin(cls) -> Catalogue:
        attacks = registry.default_attacks()
        specs = [*attacks, *registry.sanity_runs(attacks)]
        return cls({s.name: Shown(s.name, **s.shown()) for s in specs})

    @classmethod
    def of_record(cls, record: dict | None) -> Catalogue:
        """The catalogue a run record holds, else lie_ray's own."""
        recorded = ((record or {}).get("attacks") or {}).get("catalogue")
        if not recorded:
            return cls.builtin()
        return cls({name: Shown(name, **facts) for name, facts in recorded.items()})

    @classmethod
    def of_results(cls, directory: str | Path, table: str = "results.parquet") -> Catalogue:
        path = Path(directory) / table
        if not path.is_file():
            return cls.builtin()
        return cls.of_record(provenance.record_of(pq.read_schema(path)))

    # --- groups --------------------------------------------------------------------------

    def named(self, role: str | None = None, tiers=None) -> list[str]:
        return [
            s.name
            for s in self.shown.values()
            if (role is None or s.role == role) and (tiers is None or s.tier in tiers)
        ]

    def readings(self) -> list[str]:
        """The paper's readings of its protocol, Table I's, in order."""
        return sorted(self.named("paper-reading"), key=lambda n: self.shown[n].cascade_rank)

    def protocol(self) -> str:
        """The paper's protocol as written (its first reading)."""
        return self.readings()[0]

    def attacks(self, tiers=None) -> list[str]:
        return [n for n in self.named(tiers=tiers) if not self.is_sanity(n)]

    def adaptive_columns(self) -> list[str]:
        """Plain-image attacks, their worst cases (keyless: the headline of a key-based
        defence; with leaked pairs; with the key), then the channel attacks and the worst
        case over all."""
        return [
            *self.attacks(PLAIN_IMAGE_TIERS),
            WORST_CASE_KEYLESS,
            WORST_CASE_LEAKED,
            WORST_CASE,
            *self.attacks(("channel",)),
            WORST_CASE_CHANNEL,
        ]

    def united(self, worst_case: str) -> list[str]:
        """The attacks a worst case unites on a key-based defence."""
        tiers = next(w.tiers for w in WORST_CASES if w.name == worst_case)
        return self.attacks(tiers)

    def boxed(self, box: str) -> list[str]:
        return [s.name for s in self.shown.values() if s.box == box]

    def checked_by(self, checks: str) -> str | None:
        """The sanity run that the check ``checks`` reads."""
        return next((s.name for s in self.shown.values() if s.checks == checks), None)

    # --- one evaluation ------------------------------------------------------------------

    def is_sanity(self, name: str) -> bool:
        shown = self.shown.get(name)
        return shown is not None and shown.role == "sanity"

    def is_adversarial(self, name: str) -> bool:
        """An attack's row or a worst case's (not a clean error, not a sanity run)."""
        return name not in CLEAN_EVALUATIONS and not self.is_sanity(name)

    def encrypted_only(self, name: str) -> bool:
        shown = self.shown.get(name)
        return shown is not None and shown.encrypted_only

    def colour(self, name: str) -> str:
        shown = self.shown.get(name)
        return shown.colour if shown else "tab:gray"

    def label(self, name: str) -> str:
        shown = self.shown.get(name)
        return shown.label if shown else name
