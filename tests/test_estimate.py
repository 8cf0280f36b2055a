"""--estimate: its pass counts against the passes the attacks really make, and the commands
printing a table without running anything."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lie_ray.app.estimate import attack_passes
from lie_ray.evaluation.actor import EvaluateShard, evaluations
from lie_ray.evaluation.defender import Defender
from lie_ray.evaluation.protocols import PROTOCOLS, Batch
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.keys import Key
from lie_ray.keys.policies import FixedPolicy
from lie_ray.models import build_model
from lie_ray.transforms import TransformSpec

SETTINGS = EvalSettings(epsilons=(0.0, 0.1), pgd_steps=3, pgd_restarts=2, eot_keys=2,
                        square_queries=6, autoattack="light", autoattack_steps=2,
                        attacker_images=8, pba_steps=4, sanity=False)
LIE_RAY = str(Path(sys.executable).with_name("lie-ray"))
LIBRARY = ("gradient-free", "autoattack")  # they stop where an image is fooled: at most


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
    defender = Defender(encrypted, TransformSpec().keyed(key), FixedPolicy())
    shard = EvaluateShard({}, None, SETTINGS, None,
                          load_split(cifar_dir, "train").images[:SETTINGS.attacker_images])
    context = {**shard.keyless_knowledge(defender), "plain_model": plain}
    test = load_split(cifar_dir, "test").head(3)
    images = torch.from_numpy(test.images).permute(0, 3, 1, 2).float().contiguous() / 255
    return defender, context, Batch(images, torch.from_numpy(test.labels).long(), test.ids)


@pytest.mark.parametrize("name", evaluations(encrypted=True, has_plain_model=True,
                                             key_recoverable=True))
def test_each_evaluations_counted_passes_are_the_ones_it_makes(pipeline, name):
    defender, context, batch = pipeline
    networks = (defender.model, context["plain_model"])
    for network in networks:
        network.gradient = network.forward_only = 0
    done = {}
    if name == "bpda":  # bpda reuses bpda-identity's run, as in the evaluation
        done["bpda-identity"] = PROTOCOLS["bpda-identity"](defender, batch, 0.1, SETTINGS,
                                                           context)
        for network in networks:
            network.gradient = network.forward_only = 0
    PROTOCOLS[name](defender, batch, 0.1, SETTINGS, {**context, "done": done})
    made = {"gradient": sum(n.gradient for n in networks) / len(batch.ids),
            "forward": sum(n.forward_only for n in networks) / len(batch.ids)}
    counted = attack_passes(name, SETTINGS).counts
    estimate = {"gradient": counted["attack"] + counted["attack_single"],
                "forward": counted["forward"] + counted["forward_single"]}
    if name in LIBRARY:  # torchattacks also scores with autograd on: passes in all
        assert sum(made.values()) <= sum(estimate.values()), (made, estimate)
    else:
        assert made == estimate


def test_estimate_prints_a_table_and_writes_nothing(cifar_dir, tmp_path):
    out = tmp_path / "never"
    result = subprocess.run(
        [LIE_RAY, "sweep", "--preset", "smoke", "--estimate", "--data", str(cifar_dir),
         "--out", str(out)], cwd=tmp_path, env=os.environ, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in re.finditer(
        r"^(training|evaluation \(full\)|total)\s+([\d.e+]+)\s+([\d.]+)\s", result.stdout,
        re.M)}
    assert set(rows) == {"training", "evaluation (full)", "total"}, result.stdout
    passes, hours = zip(rows["training"], rows["evaluation (full)"])
    assert min(passes) > 0 and rows["total"][0] == pytest.approx(sum(passes), rel=0.01)
    assert rows["total"][1] == pytest.approx(sum(hours), abs=0.011)
    assert "Ray" not in result.stdout + result.stderr  # nothing started
    assert list(tmp_path.iterdir()) == []  # nothing written, --out not made


def test_trials_wall_is_the_last_slot_to_finish_costliest_first():
    """Tune starts trials costliest first, each on the first slot free: by hand, 5 | 3, then
    3 joins the 3 (6), then 2 joins the 5 (7); one slot is the sum, enough slots the largest."""
    from lie_ray.app.estimate import trials_wall

    assert trials_wall([3, 2, 5, 3], 2) == 7
    assert trials_wall([3, 2, 5, 3], 1) == 13
    assert trials_wall([3, 2, 5, 3], 8) == 5


def test_the_stand_ins_fit_is_counted_as_it_runs(cifar_dir):
    """PBA's fit in one actor: the pipeline's predictions on every attacker image, then each
    Adam step on a batch of 256 of them (more images than a batch, so the two differ)."""
    from lie_ray.app.estimate import fit_passes
    from lie_ray.data.cifar import load_split

    settings = dataclasses.replace(SETTINGS, attacker_images=300, pba_steps=2)
    torch.manual_seed(0)
    network = Counting(build_model(encrypted=True, width=4, adaptation_channels=8).eval())
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    defender = Defender(network, TransformSpec().keyed(Key("master", bytes(range(32)), 4)),
                        FixedPolicy())
    shard = EvaluateShard({}, None, settings, None,
                          load_split(cifar_dir, "train").images[:settings.attacker_images])
    shard.keyless_knowledge(defender)
    counted = fit_passes(settings).counts
    assert (network.gradient, network.forward_only) == (counted["attack"], counted["forward"])
