"""The registry of evaluations: lie_ray's own (``lie_ray.attacks.catalogue``) and those written
outside it, each an ``AttackSpec`` whose facts are checked when it is registered.

An attack written outside lie_ray is declared in its own package's ``pyproject.toml``,

    [project.entry-points."lie_ray.attacks"]
    wrong-key = "my_package.module:SPEC"

and every process that meets the name (a Ray actor too) loads it from there; ``register`` adds
one for this process only, which a Ray run then refuses (its actors could not find it). An
outside attack runs only where it is named (``lie-ray evaluate --attacks``,
``lie_ray.evaluate(attacks=[...])``); the built-in set is what runs by default.
"""

from __future__ import annotations

from lie_ray.attacks.spec import AttackSpec, check_facts
from lie_ray.errors import LieRayError
from lie_ray.infra import plugins

ENTRY_POINT_GROUP = "lie_ray.attacks"
EXTERNAL: dict[str, AttackSpec] = {}  # from outside, by name: entry points and register()
_ORIGIN: dict[str, str] = {}  # name -> "entry point" or "this process"
_builtin: dict[str, AttackSpec] | None = None
_entry_points_loaded = False


def builtin() -> dict[str, AttackSpec]:
    """lie_ray's own attacks by name, in their order (imported on first use: the catalogue
    brings torchattacks and the privacy attacks, which training's workers do not need)."""
    global _builtin
    if _builtin is None:
        from lie_ray.attacks.catalogue import BUILTIN

        _builtin = {spec.name: check_facts(spec) for spec in BUILTIN}
    return _builtin


def register(spec: AttackSpec, *, origin: str = "this process") -> AttackSpec:
    """Make ``spec`` known by its name in this process; a name that lie_ray's own attacks or
    another spec hold already is refused."""
    check_facts(spec)
    if spec.is_sanity:
        raise LieRayError(
            f"attack spec {spec.name}: the sanity runs are lie_ray's own; declare an attack "
            "(role 'attack')"
        )
    holder = builtin().get(spec.name) or EXTERNAL.get(spec.name)
    if holder is not None and holder is not spec:
        raise LieRayError(
            f"attack name {spec.name!r} is taken ({_ORIGIN.get(spec.name, 'built in')}): give "
            "yours another name"
        )
    EXTERNAL[spec.name] = spec
    _ORIGIN.setdefault(spec.name, origin)
    return spec


def load_entry_points() -> None:
    """Register every attack that installed packages declare (once per process)."""
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for spec in plugins.declared(ENTRY_POINT_GROUP, "attack"):
        register(spec, origin="entry point")


def spec(name: str) -> AttackSpec:
    """The attack called ``name``: lie_ray's own, or one from outside (entry points are read
    on the first name lie_ray does not know)."""
    known = builtin()
    if name in known:
        return known[name]
    if name not in EXTERNAL:
        load_entry_points()
    if name not in EXTERNAL:
        raise LieRayError(
            f"unknown attack {name!r}: choose from {', '.join(names())} (or install a package "
            f"that declares it under the {ENTRY_POINT_GROUP!r} entry points)"
        )
    return EXTERNAL[name]


def names() -> list[str]:
    """Every attack this process knows (not the sanity runs): lie_ray's, then outside ones."""
    load_entry_points()
    return [n for n, s in builtin().items() if not s.is_sanity] + [
        n for n in EXTERNAL if n not in builtin()
    ]


def chosen(names=None) -> list[AttackSpec]:
    """The attacks ``names`` names, in the registry's order (lie_ray's own first, then outside
    ones as registered), however they were listed; None: lie_ray's own (``default_attacks``)."""
    if names is None:
        return default_attacks()
    specs = [spec(name) for name in names]  # one line for an unknown name, entry points read
    order = [*builtin(), *EXTERNAL]
    return sorted(specs, key=lambda s: order.index(s.name))


def default_attacks() -> list[AttackSpec]:
    """What runs when no attack is named: every built-in attack (sanity runs apart)."""
    return [s for s in builtin().values() if not s.is_sanity]


def sanity_runs(attacks=()) -> list[AttackSpec]:
    """lie_ray's sanity runs, then the 2x run of each of ``attacks`` that declares how to
    double its effort (``AttackSpec.doubled``)."""
    from lie_ray.attacks.catalogue.sanity import doubled_run

    own = [s for s in builtin().values() if s.is_sanity]
    return own + [doubled_run(s) for s in attacks if s.doubled is not None]


def only_here(name: str) -> bool:
    """Registered by ``register`` in this process alone: a Ray actor would not find it."""
    return name not in builtin() and _ORIGIN.get(name) == "this process"


def check_reachable_from_actors(chosen) -> None:
    """A one-line refusal where a Ray run is asked for an attack its actors cannot load."""
    local = [name for name in chosen or () if only_here(name)]
    if local:
        raise LieRayError(
            f"attack(s) {', '.join(local)} were registered in this process only, so Ray's "
            f"actors cannot load them: declare them under the {ENTRY_POINT_GROUP!r} entry "
            "points of an installed package, or run without Ray"
        )
