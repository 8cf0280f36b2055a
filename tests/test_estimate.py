"""--estimate: its pass counts against the passes the attacks really make, and the commands
printing a table without running anything."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from lie_ray.app.estimate import attack_passes
from lie_ray.attacks import registry
from lie_ray.attacks.outcome import Batch
from lie_ray.attacks.pipeline import Defender
from lie_ray.evaluation.cascade import Row
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.keys import Key
from lie_ray.keys.policies import FixedPolicy, PerImagePolicy
from lie_ray.models import build_model
from lie_ray.transforms import TransformSpec

SETTINGS = EvalSettings(
    epsilons=(0.0, 0.1),
    pgd_steps=3,
    pgd_restarts=2,
    eot_keys=2,
    square_queries=6,
    autoattack="light",
    autoattack_steps=2,
    attacker_images=8,
    pba_steps=4,
    key_search_budget=4,
    rand_steps=2,
    rand_draws=2,
    sanity=False,
)
LIE_RAY = str(Path(sys.executable).with_name("lie-ray"))
# they stop where an image is fooled: at most
LIBRARY = ("gradient-free", "autoattack", "autoattack-rand")


class Counting(torch.nn.Module):
    """The network, counting the images it sees: with autograd on (an attack step's forward,
    whose backward follows) and off (scoring, predicting)."""

    def __init__(self, network: torch.nn.Module):
        super().__init__()
        self.network, self.gradient, self.forward_only = network, 0, 0

    def forward(self, x):
        if torch.is_grad_enabled():
            self.gradient += len(x)
        else:
            self.forward_only += len(x)
        return self.network(x)


@pytest.fixture(scope="module")
def pipeline(cifar_dir):
    from lie_ray.data.cifar import load_split

    torch.manual_seed(0)
    key = Key("master", bytes(range(32)), block_size=4)
    encrypted = Counting(build_model(encrypted=True, width=4, adaptation_channels=8).eval())
    plain = Counting(build_model(encrypted=False, width=4).eval())
    for network in (encrypted, plain):
        for parameter in network.parameters():
            parameter.requires_grad_(False)
    own = load_split(cifar_dir, "train").images[: SETTINGS.attacker_images]
    # a fixed key and a plain model: every attack applies but AutoAttack rand, which the
    # per-image keys' engine runs
    engines = {
        policy: Engine(
            Defender(encrypted, TransformSpec().keyed(key), policy()), SETTINGS, own, plain
        )
        for policy in (FixedPolicy, PerImagePolicy)
    }
    test = load_split(cifar_dir, "test").head(3)
    images = torch.from_numpy(test.images).permute(0, 3, 1, 2).float().contiguous() / 255
    return engines, plain, Batch(images, torch.from_numpy(test.labels).long(), test.ids)


@pytest.mark.parametrize("name", [s.name for s in registry.default_attacks()])
def test_each_evaluations_counted_passes_are_the_ones_it_makes(pipeline, name):
    engines, plain, batch = pipeline
    randomised = "randomised-key" in registry.spec(name).needs
    engine = engines[PerImagePolicy if randomised else FixedPolicy]
    assert name in engine.by_name
    networks = (engine.defender.model, plain)
    for network in networks:
        network.gradient = network.forward_only = 0
    every = np.arange(len(batch.ids))
    done = {}
    for earlier in engine.specs[: engine.specs.index(engine.by_name[name])]:
        # what ran before it at this epsilon, as in the evaluation (bpda reuses
        # bpda-identity's run, recovered-key-k a smaller k's with the same key)
        outcome = engine.run(earlier, batch, 0.1, every, done, SETTINGS)
        done[earlier.name] = Row(earlier.name, 0.1, every, outcome)
    for network in networks:
        network.gradient = network.forward_only = 0
    outcome = engine.run(engine.by_name[name], batch, 0.1, every, done, SETTINGS)
    made = {
        "gradient": sum(n.gradient for n in networks) / len(batch.ids),
        "forward": sum(n.forward_only for n in networks) / len(batch.ids),
    }
    if outcome.reused:  # handed an earlier run's outcome: no pass made, none priced
        assert made == {"gradient": 0, "forward": 0}
        return
    counted = attack_passes(engine.by_name[name], SETTINGS).counts
    estimate = {
        "gradient": counted["attack"] + counted["attack_single"],
        "forward": counted["forward"] + counted["forward_single"],
    }
    if name in LIBRARY:  # torchattacks also scores with autograd on: passes in all
        assert sum(made.values()) <= sum(estimate.values()), (made, estimate)
    else:
        assert made == estimate


def test_estimate_prints_a_table_and_writes_nothing(cifar_dir, tmp_path):
    out = tmp_path / "never"
    result = subprocess.run(
        [
            LIE_RAY,
            "sweep",
            "--preset",
            "smoke",
            "--estimate",
            "--data",
            str(cifar_dir),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=os.environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {
        m.group(1): (float(m.group(2)), float(m.group(3)))
        for m in re.finditer(
            r"^(training|evaluation \(full\)|total)\s+([\d.e+]+)\s+([\d.]+)\s", result.stdout, re.M
        )
    }
    assert set(rows) == {"training", "evaluation (full)", "total"}, result.stdout
    passes, hours = zip(rows["training"], rows["evaluation (full)"])
    assert min(passes) > 0 and rows["total"][0] == pytest.approx(sum(passes), rel=0.01)
    assert rows["total"][1] == pytest.approx(sum(hours), abs=0.011)
    assert "Ray" not in result.stdout + result.stderr  # nothing started
    assert list(tmp_path.iterdir()) == []  # nothing written, --out not made


def test_work_done_prices_what_ran_and_not_an_outcome_handed_on():
    """recovered-key-k's rows handed a smaller k's outcome (``reused``) cost nothing: by hand,
    each row that ran is one PGD of 3 steps and 2 restarts, 6 gradient passes at 1 s each."""
    import pyarrow as pa

    from lie_ray.app.estimate import KINDS, PassSeconds, work_done
    from lie_ray.scenarios import Scenario

    rows = (
        [("recovered-key-1", 0.1, True, False)] * 3
        + [("recovered-key-2", 0.1, True, True)] * 3
        + [("recovered-key-4", 0.1, True, True)] * 2
        + [
            ("recovered-key-4", 0.1, True, False),
            ("recovered-key-1", 0.0, True, False),
            ("recovered-key-2", 0.1, False, False),
        ]
    )
    table = pa.table(dict(zip(("evaluation", "epsilon", "attacked", "reused"), zip(*rows))))
    table = table.append_column("scenario", pa.array(["Enc"] * len(rows)))
    seconds = PassSeconds({kind: float(kind == "attack") for kind in KINDS}, spread=0.0)

    def cost(t):
        return work_done(
            t, SETTINGS, [Scenario("Enc", encrypted=True, key_policy="fixed")], 3, 8, seconds
        )

    nothing = cost(table.filter(pa.array([False] * len(rows))))
    assert cost(table) - nothing == pytest.approx(4 * 3 * 2)  # 3 of k=1, 1 of k=4 ran
    older = table.drop_columns(["reused"])  # written before the column existed: every row
    assert cost(older) - nothing == pytest.approx(9 * 3 * 2)
    unknown = older.append_column("reused", pa.nulls(len(rows), pa.bool_()))  # resumed beside
    assert cost(unknown) - nothing == pytest.approx(9 * 3 * 2)  # an older part: likewise


def test_trials_wall_is_the_last_slot_to_finish_costliest_first():
    """Tune starts trials costliest first, each on the first slot free: by hand, 5 | 3, then
    3 joins the 3 (6), then 2 joins the 5 (7); one slot is the sum, enough slots the largest."""
    from lie_ray.app.estimate import trials_wall

    assert trials_wall([3, 2, 5, 3], 2) == 7
    assert trials_wall([3, 2, 5, 3], 1) == 13
    assert trials_wall([3, 2, 5, 3], 8) == 5


def test_the_stand_ins_fit_is_counted_as_it_runs(cifar_dir):
    """The keyless preparation, as an actor's engine runs it: each fit's Adam steps on a
    batch of 128 of the attacker's 200 images (more images than a batch, so the two differ)
    are priced exactly; the forward passes are the pipeline's answers, the judging of the 100
    held-out images (one pass per variant: agreement and accuracy) and every candidate the
    search scored, of which the cost model prices all but the judging."""
    from lie_ray.attacks.views import OwnImages
    from lie_ray.data.cifar import load_split

    settings = dataclasses.replace(SETTINGS, attacker_images=200, pba_steps=2, attacks=("pba",))
    torch.manual_seed(0)
    network = Counting(build_model(encrypted=True, width=4, adaptation_channels=8).eval())
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    defender = Defender(
        network, TransformSpec().keyed(Key("master", bytes(range(32)), 4)), FixedPolicy()
    )
    train = load_split(cifar_dir, "train")
    own = OwnImages(train.images[-300:], train.labels[-300:], settings.attacker_images)
    engine = Engine(defender, settings, own)  # fits, once, as an actor does
    fit = engine.views["pba"].prepared
    counted = registry.spec("pba").prepare_cost(settings)
    search = registry.spec("key-search").prepare_cost(
        dataclasses.replace(settings, key_search_budget=fit.found.evaluations)
    )
    judging = 100 + 100 * len(fit.stand_ins)  # the pipeline's answers, then per variant
    assert network.gradient == counted["attack"]
    assert network.forward_only == counted["forward"] + search["forward"] + judging


def test_the_2x_run_carries_the_fit_on_and_reuses_the_key_search(cifar_dir, monkeypatch):
    """PBA's 2x check doubles the bypass's fit, not the key search: the search runs once per
    scenario, and the 2x run carries each 1x fit on to twice its steps. Its stand-ins are
    fresh fits of twice the steps (the labels variant, refitted from scratch here, bit for
    bit), the 1x stand-ins are left as they were, and the passes the two runs made are the
    ones the estimate prices (its 2x adds its attack's fit once more)."""
    from lie_ray.app.estimate import every_image_passes
    from lie_ray.attacks import bypass, key_search
    from lie_ray.attacks.catalogue.keyless_fit import fit_keyless
    from lie_ray.attacks.seeding import salted
    from lie_ray.attacks.views import OwnImages
    from lie_ray.data.cifar import load_split
    from lie_ray.models.device import images_to_device

    searches = []
    search = key_search.search_key
    monkeypatch.setattr(
        key_search, "search_key", lambda *a, **k: searches.append(1) or search(*a, **k)
    )
    settings = dataclasses.replace(
        SETTINGS,
        attacker_images=64,
        pba_steps=2,
        key_search_budget=6,
        attacks=("pba",),
        sanity=True,
    )
    torch.manual_seed(0)
    # in eval mode as a whole: a wrapper left in train mode would hand its training flag on
    network = Counting(build_model(encrypted=True, width=4, adaptation_channels=8)).eval()
    defender = Defender(
        network, TransformSpec().keyed(Key("master", bytes(range(32)), 4)), FixedPolicy()
    )
    train = load_split(cifar_dir, "train")
    own = OwnImages(train.images[-96:], train.labels[-96:], 64)
    engine = Engine(defender, settings, own)
    once, twice = engine.views["pba"].prepared, engine.views["pba-2x"].prepared
    assert len(searches) == 1
    assert twice.found is once.found and "from-search" in twice.stand_ins
    assert (once.steps, twice.steps) == (2, 4)

    made = network.gradient
    images = images_to_device(own.fitting[0], torch.device("cpu"))
    labels = torch.from_numpy(own.fitting[1]).long()

    seed = salted(settings.attacker_seed, fit_keyless.__qualname__)  # the preparation's own

    def fresh(steps):
        stand_in = bypass.stand_in_for(engine.views["pba"].transform)
        return bypass.fit(network, stand_in, images, labels, steps, seed=seed)

    for stand_in, steps in ((twice.stand_ins["labels"], 4), (once.stand_ins["labels"], 2)):
        for ours, theirs in zip(stand_in.parameters(), fresh(steps).parameters(), strict=True):
            assert torch.equal(ours, theirs)
    priced = every_image_passes(engine.specs, settings, 0, 0).counts["attack"]  # 2x included
    assert made == priced


# ---------------------------------------------------------------------------- calibration
def write_timings(
    directory: Path,
    machine: dict,
    training=(600.0, 900.0),
    evaluation=(300.0, 390.0),
    calibration=None,
    resumed=False,
) -> Path:
    """A finished sweep's timings.json: (predicted, measured) seconds per phase; the
    evaluation's prediction is the cost model's figure for the work the run did."""
    import json

    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "predicted": {
            "phases": {"training": {"wall_seconds": training[0]}},
            "calibration": calibration,
        },
        "measured_seconds": {"training": training[1], "evaluation": evaluation[1]},
        "evaluation_work_done": {"wall_seconds": evaluation[0]},
        "resumed": resumed,
        "machine": machine,
        "preset": "study",
    }
    (directory / "timings.json").write_text(json.dumps(record))
    return directory


def test_a_calibration_is_what_the_earlier_sweep_measured_over_its_bare_prediction(tmp_path):
    """900 s measured against 600 predicted is x1.5; a run that was itself calibrated is
    divided back to bare PyTorch first: 600 / 1.2 = 500 bare, so x1.8; 300 / 1.3 bare, so the
    390 measured is x1.69."""
    from lie_ray.app.calibration import read_calibration
    from lie_ray.infra.provenance import machine

    ratios = read_calibration(write_timings(tmp_path / "a", machine()))
    assert (ratios.training, ratios.evaluation, ratios.preset) == (1.5, 1.3, "study")
    again = read_calibration(
        write_timings(tmp_path / "b", machine(), calibration={"training": 1.2, "evaluation": 1.3})
    )
    assert (again.training, again.evaluation) == pytest.approx((1.8, 1.69))


@pytest.mark.parametrize(
    "how, fragment",
    [
        ("another machine", "calibrate with a sweep run here"),
        ("resumed", "resumed sweep"),
        ("missing", "no timings.json there"),
        ("unfinished", "not a finished sweep's timings"),
    ],
)
def test_a_calibration_from_elsewhere_is_refused_naming_why(tmp_path, how, fragment):
    from lie_ray.app.calibration import read_calibration
    from lie_ray.errors import LieRayError
    from lie_ray.infra.provenance import machine

    here = machine()
    if how == "another machine":
        write_timings(tmp_path, dict(here, cores=here["cores"] + 14))
    elif how == "resumed":
        write_timings(tmp_path, here, resumed=True)
    elif how == "unfinished":
        (tmp_path / "timings.json").write_text('{"predicted": {}}')
    with pytest.raises(LieRayError, match=re.escape(fragment)):
        read_calibration(tmp_path)


def test_a_calibration_scales_each_phase_by_its_own_ratio(cifar_dir):
    """Fixed seconds per pass, so the probe's noise is out: every training trial's cost is
    x1.5 (and so the schedule's wall), every evaluation row x1.3; the passes stay."""
    from lie_ray.app.calibration import Calibration
    from lie_ray.app.estimate import KINDS, PassSeconds, priced
    from lie_ray.evaluation.settings import get_eval_preset
    from lie_ray.scenarios import PAPER_SCENARIOS
    from lie_ray.training.settings import get_preset

    seconds = PassSeconds({kind: 1e-3 * (i + 1) for i, kind in enumerate(KINDS)}, 0.1)
    scenarios = [PAPER_SCENARIOS[n] for n in ("Plain", "Encrypted", "Encrypted-Adv")]
    args = (scenarios, get_preset("smoke"), get_eval_preset("smoke"), cifar_dir, seconds, 2, "cpu")
    bare = priced(*args)
    scaled = priced(*args, Calibration(1.5, 1.3, "timings.json", "smoke"))
    for phase, factor in [("training", 1.5), ("evaluation (full)", 1.3)]:
        before, after = bare.phase(phase), scaled.phase(phase)
        assert after.passes.total == before.passes.total
        assert after.wall_seconds == pytest.approx(factor * before.wall_seconds, rel=1e-12)
        assert after.device_seconds == pytest.approx(factor * before.device_seconds, rel=1e-12)
    assert scaled.record()["calibration"]["training"] == 1.5
    assert "calibrated by timings.json" in scaled.table() and "uncalibrated" in bare.table()


def test_estimate_takes_a_calibration_and_only_with_estimate(cifar_dir, tmp_path):
    from lie_ray.infra.provenance import machine

    earlier = write_timings(tmp_path / "earlier", machine())
    common = ["--preset", "smoke", "--data", str(cifar_dir), "--calibration", str(earlier)]

    def run(*args):
        return subprocess.run(
            [LIE_RAY, *args],
            cwd=tmp_path,
            env=os.environ,
            capture_output=True,
            text=True,
            timeout=300,
        )

    printed = run("sweep", "--estimate", *common)
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert (
        "calibrated by" in printed.stdout and "training x1.50, evaluation x1.30" in printed.stdout
    )
    refused = run("train", *common, "--out", str(tmp_path / "never"))
    assert refused.returncode == 2
    assert "add --estimate, or drop --calibration" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert not (tmp_path / "never").exists()


def test_expected_walls_add_what_the_run_adds_to_the_bare_prediction(cifar_dir):
    """With no start-up and no helpers the expected walls are the bare ones (training's
    schedule of scenarios without adversarial training; the evaluation between its floor and
    all of it); a start-up of 2 s adds the fixed costs: at least each trial's start-up and
    epochs along the busiest slot; Ray's helpers stretch the compute."""
    from lie_ray.app import overheads as fixed
    from lie_ray.app.estimate import KINDS, PassSeconds, priced
    from lie_ray.app.overheads import Overheads
    from lie_ray.evaluation.settings import get_eval_preset
    from lie_ray.scenarios import PAPER_SCENARIOS
    from lie_ray.training.settings import get_preset

    seconds = PassSeconds({kind: 1e-3 * (i + 1) for i, kind in enumerate(KINDS)}, 0.0)
    train, evaluation = get_preset("study"), get_eval_preset("study")
    scenarios = [s for s in PAPER_SCENARIOS.values() if not s.adversarial]
    args = (scenarios, train, evaluation, cifar_dir, seconds, 2, "cpu", None)
    bare = priced(*args, Overheads(0.0, 1.0), True, 7)
    assert bare.expected_seconds("training") == pytest.approx(bare.phase("training").wall_seconds)
    low, high = bare.evaluation_range()
    assert low < bare.expected_seconds("evaluation") < high
    added = priced(*args, Overheads(2.0, 1.0), True, 7)
    trials_per_slot = -(-len(scenarios) // 2)
    fixed_per_trial = 2.0 * (fixed.TRIAL_STARTS + train.epochs * fixed.EPOCH_STARTS)
    grown = added.expected_seconds("training") - bare.expected_seconds("training")
    assert grown >= trials_per_slot * fixed_per_trial
    assert added.expected_seconds("privacy") == pytest.approx(
        7 * 2.0 * fixed.PRIVACY_STARTS_PER_TRANSFORM
    )
    assert added.expected_seconds("evaluation") > bare.expected_seconds("evaluation")
    stretched = priced(*args, Overheads(0.0, 1.2), True, 7)
    assert stretched.expected_seconds("training") == pytest.approx(
        1.2 * bare.expected_seconds("training")
    )
