"""Scenarios are records, not code branches: the paper's five ship by name, users add more in
TOML.

    [[scenario]]
    name = "Encrypted-Adv-FGSM"
    encrypted = true
    key_policy = "fixed"          # or "per-minibatch", "id-group", "per-image"; omit for plain
    adversarial = true
    eps = 0.1                     # adversarial-training attack, on the plain image
    step_size = 0.1
    steps = 1
    transform = "shuffle"         # which key-based transform (lie_ray.transforms); default "le"
    block_size = 4                # its block size (default: the key's for le, else the paper's)
    variant = "reference"         # a named variant (default: the faithful one)
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass
from pathlib import Path

from lie_ray.errors import LieRayError
from lie_ray.keys import Key
from lie_ray.keys.policies import POLICIES, load_key_for_policies, unknown_policy
from lie_ray.transforms import REGISTRY, TransformSpec, transform_class


@dataclass(frozen=True)
class Scenario:
    name: str
    encrypted: bool
    key_policy: str | None = None
    adversarial: bool = False
    eps: float = 0.1
    step_size: float = 0.01
    steps: int = 20
    transform: str = "le"
    block_size: int | None = None
    variant: str | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip() or "," in self.name:
            raise LieRayError(
                f"scenario name {self.name!r} must be a non-empty string without "
                "commas (--scenarios splits on them): rename the scenario"
            )
        for flag in ("encrypted", "adversarial"):
            if not isinstance(getattr(self, flag), bool):
                raise LieRayError(
                    f"scenario {self.name!r}: {flag} must be true or false, got "
                    f"{getattr(self, flag)!r}: write {flag} = true (or false)"
                )
        for field in ("key_policy", "transform", "variant"):
            value = getattr(self, field)
            if value is not None and not isinstance(value, str):
                raise LieRayError(
                    f"scenario {self.name!r}: {field} must be a string, got "
                    f'{value!r}: write {field} = "..."'
                )
        if self.encrypted and self.key_policy not in POLICIES:
            raise LieRayError(f"scenario {self.name!r}: {unknown_policy(self.key_policy)}")
        if not self.encrypted and self.key_policy is not None:
            raise LieRayError(
                f"scenario {self.name!r} is not encrypted but names key_policy "
                f"{self.key_policy!r}: set encrypted = true or drop key_policy"
            )
        check_attack_settings(self.eps, self.step_size, self.steps, where=f"scenario {self.name!r}")
        try:
            self.transform_spec()
        except LieRayError as err:
            raise LieRayError(f"scenario {self.name!r}: {err}") from None

    def transform_spec(self) -> TransformSpec:
        """The scenario's transform with its parameters (block size None: the key's for LE)."""
        return TransformSpec(self.transform, self.block_size, self.variant)

    def with_attack(self, **overrides) -> Scenario:
        """A copy with attack settings replaced, skipping overrides that are None."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})


def check_attack_settings(eps: float, step_size: float, steps: int, where: str) -> None:
    """Adversarial-training attack settings; NaN and infinities fail the range checks too."""
    if not _is_number(eps) or not 0 < eps <= 1:
        raise LieRayError(
            f"{where}: eps must lie in (0, 1] (pixel scale), got {eps!r}: pass "
            "--pgd-eps (or the scenario's eps) in that range, e.g. 0.1"
        )
    if not _is_number(step_size) or not 0 < step_size <= 1:
        raise LieRayError(
            f"{where}: step size must lie in (0, 1], got {step_size!r}: pass "
            "--pgd-step-size (or the scenario's step_size) in that range, e.g. 0.01"
        )
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 10_000:
        raise LieRayError(
            f"{where}: steps must be an integer in 1..10000, got {steps!r}: pass "
            "--pgd-steps (or the scenario's steps) in that range, e.g. 20"
        )


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


PAPER_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("Plain", encrypted=False),
        Scenario("Encrypted", encrypted=True, key_policy="fixed"),
        Scenario("Encrypted-Adv", encrypted=True, key_policy="fixed", adversarial=True),
        Scenario("Encrypted-DK", encrypted=True, key_policy="per-minibatch"),
        Scenario("Encrypted-Adv-DK", encrypted=True, key_policy="per-minibatch", adversarial=True),
    ]
}


# One encrypted scenario per transform (fixed key, each at its paper's first block size),
# beside Plain, all under the same honest evaluations: ``--preset family``.
FAMILY_SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario("Plain", encrypted=False),
        *(
            Scenario(cls.label, encrypted=True, key_policy="fixed", transform=name)
            for name, cls in REGISTRY.items()
        ),
    ]
}
# presets whose default is not the paper's five (the board: the family at the study scale)
PRESET_SCENARIOS = {"family": FAMILY_SCENARIOS, "board": FAMILY_SCENARIOS}


def load_scenario_file(path: str | Path) -> dict[str, Scenario]:
    source = Path(path)
    try:
        records = tomllib.loads(source.read_text()).get("scenario", [])
    except FileNotFoundError:
        raise LieRayError(
            f"scenario file {source} not found: check the --scenario-file path"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise LieRayError(
            f"scenario file {source} cannot be read ({type(err).__name__}): pass "
            "a readable UTF-8 TOML file as --scenario-file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise LieRayError(
            f"scenario file {source} is not valid TOML ({err}): fix that line"
        ) from None
    fields = {f.name for f in dataclasses.fields(Scenario)}
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise LieRayError(
            f"scenario file {source}: write each scenario as a [[scenario]] table "
            "(see docs/training.md)"
        )
    scenarios = {}
    for record in records:
        unknown = set(record) - fields
        if unknown or "name" not in record or "encrypted" not in record:
            raise LieRayError(
                f"scenario file {source}: each [[scenario]] needs name and "
                f"encrypted, and knows only {sorted(fields)}; got {sorted(record)}"
            )
        if record["name"] in scenarios:  # a silent last-one-wins would run the wrong settings
            raise LieRayError(
                f"scenario file {source} defines {record['name']!r} twice: give "
                "each [[scenario]] its own name"
            )
        scenarios[record["name"]] = Scenario(**record)
    return scenarios


def known_scenarios(extra_files: str | Path | list | tuple | None = None) -> dict[str, Scenario]:
    """The built-in scenarios plus those of every ``--scenario-file``. A name defined twice
    (a built-in scenario, or one of another file) is an error: results are keyed by name."""
    known = {**FAMILY_SCENARIOS, **PAPER_SCENARIOS}
    files = [extra_files] if isinstance(extra_files, (str, Path)) else list(extra_files or [])
    origin = {name: "a built-in scenario" for name in known}
    for path in files:
        for name, scenario in load_scenario_file(path).items():
            if name in known:
                raise LieRayError(
                    f"scenario file {path} defines {name!r}, already "
                    f"{origin[name]}: give it another name"
                )
            known[name], origin[name] = scenario, f"defined in {path}"
    return known


def parse_names(names: str, option: str = "--scenarios") -> list[str]:
    """Comma-separated names, each once: ``Plain,Plain`` would run (and report) it twice."""
    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise LieRayError(
            f"{option} {names!r} names no scenario: pass comma-separated scenario "
            "names, or leave it out to run them all"
        )
    repeated = sorted({n for n in chosen if chosen.count(n) > 1})
    if repeated:
        raise LieRayError(
            f"{option} names {', '.join(map(repr, repeated))} more than once: "
            "list each scenario once"
        )
    return chosen


def select_scenarios(
    names: str | None, extra_files: str | Path | list | None = None, preset: str | None = None
) -> list[Scenario]:
    """Scenarios by comma-separated name; when ``names`` is None, the preset's own (the paper's
    five unless the preset has others, e.g. ``family``) plus those of every scenario file."""
    known = known_scenarios(extra_files)
    if names is None:
        builtin = {**FAMILY_SCENARIOS, **PAPER_SCENARIOS}
        default = dict(PRESET_SCENARIOS.get(preset, PAPER_SCENARIOS))
        default.update({n: s for n, s in known.items() if n not in builtin})
        return list(default.values())
    chosen = []
    for name in parse_names(names):
        if name not in known:
            raise LieRayError(
                f"unknown scenario {name!r}: choose from {', '.join(known)}, or "
                "define it in a --scenario-file"
            )
        chosen.append(known[name])
    return chosen


def key_for_scenarios(
    scenarios: list[Scenario],
    key_path: str | Path | None,
    block_size: int,
    key_batch_size: int = 128,
) -> Key | None:
    """The key checks of a job that runs ``scenarios``, for its driver before Ray starts.

    Encrypted scenarios need a key; a key that is given must load (present, private, intact,
    a known version), be made for ``block_size``, fit 32x32 images and serve every policy used.
    Returns the key, or None when no key was given and none is needed.
    """
    key = load_key_for_policies(
        key_path,
        [s.key_policy for s in scenarios if s.encrypted],
        key_batch_size,
        block_size=block_size,
    )
    if key is not None and not key.derives_subkeys:
        # An imported permutation is one LE key at its own block size; anything else derives.
        derived = [
            s.name
            for s in scenarios
            if s.encrypted
            and (
                not transform_class(s.transform).block_size_from_key
                or (s.block_size or block_size) != key.block_size
            )
        ]
        if derived:
            key.require_master(
                f"scenario(s) {', '.join(derived)} derive their keys from a master key",
                fix="pass a key made by 'lie-ray keygen'",
            )
    return key
