"""Every evaluation is one declared spec (``lie_ray.attacks``): its facts checked when it is
registered, its name written nowhere else in lie_ray, and what its attacker is handed built for
its tier, so that a keyless attack cannot reach the key it is not meant to have."""

from __future__ import annotations

import dataclasses
import functools
import gc
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

import lie_ray
from lie_ray import attacks
from lie_ray.attacks import registry
from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.pipeline import Defender
from lie_ray.attacks.spec import NEEDS, TIERS, AttackSpec
from lie_ray.attacks.views import Keyless, Leaked, WithKey
from lie_ray.errors import LieRayError
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.keys import FIXED_LABEL, Key, generate_key
from lie_ray.keys.policies import FixedPolicy
from lie_ray.models import build_model
from lie_ray.transforms import KeyedTransform, Transform, TransformSpec

FAST = EvalSettings(
    epsilons=(0.0, 8 / 255),
    pgd_steps=2,
    pgd_restarts=1,
    eot_keys=1,
    square_queries=4,
    autoattack="light",
    autoattack_steps=1,
    attacker_images=8,
    pba_steps=4,
    key_search_budget=4,
    sanity=False,
)


def test_every_attack_is_one_spec_holding_every_fact_the_code_asks():
    specs = [*registry.default_attacks(), *registry.sanity_runs()]
    print(registry.spec("pba"))  # the closing note quotes one
    for spec in specs:
        assert None not in (getattr(spec, fact) for fact in AttackSpec.REQUIRED_FACTS), spec.name
        assert spec.tier in TIERS and spec.needs <= set(NEEDS)
    # The groups the code used to keep as tuples come out of the facts.
    readings = [s.name for s in specs if s.role == "paper-reading"]
    assert readings == ["pgd", "paper-literal", "bpda-identity"]
    assert [s.name for s in specs if s.tier == "leaked"] == [
        f"recovered-key-{k}" for k in (1, 2, 4)
    ]
    assert [s.name for s in specs if s.tier == "channel"] == ["encrypted-input"]
    assert [s.name for s in specs if not s.restarts] == ["pgd", "paper-literal", "encrypted-input"]
    assert [s.name for s in specs if s.is_sanity] == [
        "sanity-unbounded",
        "sanity-pgd",
        "sanity-pgd-2x",
    ]


def probe_spec(name: str = "probe", tier: str = "keyless", **facts) -> AttackSpec:
    """An attack of the test's own: PGD through the plain network (any tier can)."""

    def run(view, batch, eps, settings):
        run.views.append(view)
        return through(view.network, view, batch, eps, settings)

    run.views = []
    defaults = dict(
        name=name,
        tier=tier,
        run=run,
        cost=pgd_cost,
        cascade_rank=99,
        label=name,
        leaked_pairs=2 if tier == "leaked" else 0,
        needs=frozenset({"transform", "attacker-images"} if tier == "leaked" else ()),
    )
    return AttackSpec(**{**defaults, **facts})


@pytest.mark.parametrize(
    "facts, fragment",
    [
        ({"cost": None}, "lacks cost"),
        ({"label": None, "cascade_rank": None}, "lacks cascade_rank, label"),
        ({"tier": "insider"}, "tier 'insider' is not one of keyless, leaked"),
        ({"needs": frozenset({"a-key"})}, "needs ['a-key'], not among transform"),
        ({"leaked_pairs": 3}, "names its leaked_pairs"),
        (
            {"tier": "leaked", "leaked_pairs": 1, "needs": frozenset()},
            "needs the transform and the attacker's images",
        ),
        ({"name": "worst-case"}, "a row name lie_ray reserves"),
        ({"name": "pba"}, "attack name 'pba' is taken"),
    ],
)
def test_a_spec_missing_or_misstating_a_fact_is_refused_at_registration(facts, fragment):
    with pytest.raises(LieRayError) as refused:
        attacks.register(probe_spec(**{"name": "refused", **facts}))
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
    assert "refused" not in registry.EXTERNAL


# Where an attack's name may appear as a quoted literal although it is not that attack:
# another concept that shares the word, each with its reason.
SHARED_WORDS = {
    ("lie_ray/training/settings.py", "pgd"): "--adv-attack's values: how training's PGD "
    "meets the cipher",
    ("lie_ray/training/settings.py", "bpda"): "--adv-attack's values",
    ("lie_ray/transforms/base.py", "bpda"): "Transform.gradient, the kind of backward pass",
    ("lie_ray/transforms/le.py", "bpda"): "Transform.gradient",
    ("lie_ray/transforms/ffx.py", "bpda"): "Transform.gradient and its backward's name",
}


def test_no_attack_name_is_a_literal_outside_its_own_spec():
    """The grep: every quoted name of an evaluation, in every module of lie_ray, is in the
    module that declares it (its spec's run function's), or a shared word listed above."""
    found = []
    files = sorted((REPO_ROOT / "lie_ray").rglob("*.py"))
    for spec in [*registry.default_attacks(), *registry.sanity_runs()]:
        home = Path(sys.modules[spec.run.__module__].__file__).resolve()
        pattern = re.compile(rf"""["']{re.escape(spec.name)}["']""")
        for path in files:
            where = str(path.relative_to(REPO_ROOT))
            if path.resolve() == home or (where, spec.name) in SHARED_WORDS:
                continue
            found += [f"{where}: {spec.name}" for _ in pattern.finditer(path.read_text())]
    assert found == []
    assert "pgd" in (REPO_ROOT / "lie_ray/attacks/catalogue/paper.py").read_text()  # it can see


# --------------------------------------------------------------------------- the views
def reachable(root) -> list:
    """Every object reachable from ``root`` through attributes, containers, closures, bound
    methods and partials; not through classes, modules or a function's globals (from which
    everything in the process is reachable). Tensors and arrays are leaves."""
    seen, stack, found = set(), [root], []
    leaves = (type, types.ModuleType, types.CodeType, torch.Tensor, np.ndarray, str, int, float)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        found.append(obj)
        if isinstance(obj, leaves) or obj is None:
            continue
        if isinstance(obj, types.FunctionType):
            cells = [cell.cell_contents for cell in obj.__closure__ or ()]
            stack += [*cells, *(obj.__defaults__ or ()), *(obj.__kwdefaults__ or {}).values()]
        elif isinstance(obj, types.MethodType):
            stack += [obj.__self__, obj.__func__]
        elif isinstance(obj, functools.partial):
            stack += [obj.func, *obj.args, *obj.keywords.values()]
        else:
            stack += gc.get_referents(obj)
    return found


def holds_the_key(root, defender: Defender) -> list[str]:
    """What reachable from ``root`` gives the defender's key away: the key, its secret, the
    keyed transform, the pipeline, or a transform keyed with the defender's key."""
    secret = bytes(defender.key.key._secret)
    keyed = defender.key.transform(FIXED_LABEL).fingerprint
    found = []
    for obj in reachable(root):
        if isinstance(obj, Key | KeyedTransform | Defender):
            found.append(type(obj).__name__)
        elif isinstance(obj, bytes | bytearray) and secret in bytes(obj):
            found.append("the key's secret")
        elif isinstance(obj, Transform) and obj.fingerprint == keyed:
            found.append(f"{obj!r}, keyed with the defender's key")
    return found


@pytest.fixture(scope="module")
def engine(cifar_dir):
    """A fixed-key LE defender, its plain model and the attacker's images: every attack
    applies, and each gets its tier's view, what it prepares (PBA's stand-in, the recovered
    keys) inside."""
    from lie_ray.data.cifar import load_split

    torch.manual_seed(0)
    network = build_model(encrypted=True, width=4, adaptation_channels=8).eval()
    plain = build_model(encrypted=False, width=4).eval()
    defender = Defender(network, TransformSpec().keyed(generate_key()), FixedPolicy())
    own = load_split(cifar_dir, "train").images[:8]
    return Engine(defender, FAST, own, plain)


def test_no_key_is_reachable_from_a_keyless_view(engine):
    keyless = [s for s in engine.specs if s.tier == "keyless"]
    assert {s.name for s in keyless} == {"eot", "transfer", "gradient-free", "pba", "key-search"}
    for spec in keyless:
        view = engine.views[spec.name]
        assert type(view) is Keyless
        assert holds_the_key(view, engine.defender) == [], spec.name
    assert engine.views["pba"].prepared is not None  # its stand-in is in the walk
    # A leaked view holds pairs (and the key recovered from them), never the defender's key.
    for name in ("recovered-key-1", "recovered-key-4"):
        assert type(engine.views[name]) is Leaked
        found = holds_the_key(engine.views[name], engine.defender)
        assert all("keyed with the defender's key" in f for f in found), found


def test_the_walk_finds_the_key_where_it_is(engine):
    """The check can fail: the with-key view holds the pipeline, and a keyless view whose
    query closed over the pipeline (as a plain lambda would) holds it too."""
    assert "Defender" in holds_the_key(engine.views["bpda"], engine.defender)
    defender = engine.defender
    leaky = dataclasses.replace(
        engine.views["eot"], oracle=lambda x, ids: defender.model(defender.encrypt(x, ids))
    )
    found = holds_the_key(leaky, defender)
    assert {"Defender", "KeyedTransform", "Key", "the key's secret"} <= set(found)


def test_each_attack_is_handed_the_view_of_its_tier(learned):
    defenders, batch = learned
    probes = {tier: probe_spec(f"probe-{tier}", tier) for tier in TIERS}
    for spec in probes.values():
        attacks.register(spec)
    own = torch.round(batch.images[:8] * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    images = torch.round(batch.images[8:24] * 255).to(torch.uint8)
    lie_ray.evaluate(
        defenders["Encrypted"].model,
        images,
        batch.labels[8:24],
        transform=defenders["Encrypted"].key.transform(),
        attacks=[s.name for s in probes.values()],
        threat="channel",
        attacker_images=own,
        pgd_steps=2,
        pgd_restarts=1,
        sanity=False,
    )
    views = {tier: spec.run.views[0] for tier, spec in probes.items()}
    assert {tier: type(view) for tier, view in views.items()} == {
        "keyless": Keyless,
        "leaked": Leaked,
        "with-key": WithKey,
        "channel": WithKey,
    }
    plain, encrypted = views["leaked"].pairs
    assert len(plain) == 2 and np.array_equal(plain, own[:2])  # its k pairs, and no more
    assert np.array_equal(encrypted, defenders["Encrypted"].key.transform().encrypt(own[:2]))


def test_an_attack_registered_here_alone_is_refused_for_a_ray_run(learned, tmp_path):
    defenders, batch = learned
    spec = attacks.register(probe_spec("probe-here"))
    key = tmp_path / "key.json"
    from lie_ray.keys import save_key

    save_key(Key("master", bytes(range(32)), 4), key)
    with pytest.raises(LieRayError) as refused:
        lie_ray.evaluate(
            defenders["Encrypted"].model,
            torch.round(batch.images[:4] * 255).to(torch.uint8),
            batch.labels[:4],
            transform="le",
            key=key,
            attacks=[spec.name],
            threat="keyless",
            ray=True,
        )
    message = str(refused.value)
    assert "probe-here" in message and "lie_ray.attacks" in message and "\n" not in message
