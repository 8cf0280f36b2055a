"""A transform written outside lie_ray (``examples/xor_transform``), installed as users install
a plug-in (pip, from its own pyproject.toml, into a directory on PYTHONPATH), goes where a
built-in transform goes: a scenario file, training, every attack, the privacy attacks, the
report; the sweep runs as a subprocess on the embedded Ray it starts, whose workers find the
plug-in through its entry point as the driver does (the ``xor_board`` sweep, which the board's
tests read too). An outside attack (``examples/wrong_key_attack``) likewise."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from conftest import REPO_ROOT
from plugins import ATTACK_EXAMPLE, XOR_EXAMPLE, XOR_SCENARIO, installed

LIE_RAY = os.path.join(os.path.dirname(sys.executable), "lie-ray")


def lie_ray(env, *args, expect: int = 0) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [LIE_RAY, *map(str, args)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO_ROOT,
    )
    assert done.returncode == expect, (done.stdout + done.stderr)[-4000:]
    return done


def test_outside_transform_trains_is_attacked_and_its_key_recovered(xor_board):
    training = {r["scenario"]: r for r in pq.read_table(xor_board / "training.parquet").to_pylist()}
    assert training["XOR"]["transform"] == "xor" and training["XOR"]["encrypted"]
    assert training["XOR"]["key_fingerprint"]

    results = pq.read_table(xor_board / "results.parquet").to_pandas()
    xor = results[(results.scenario == "XOR") & (results.epsilon == 0.1)].set_index("evaluation")
    # Every attack a built-in transform with BPDA gets, the recovered-key ones included (one
    # leaked pair gives XOR's key away: plain XOR cipher).
    for name in (
        "pgd",
        "bpda",
        "eot",
        "transfer",
        "pba",
        "autoattack",
        "recovered-key-1",
        "worst-case-keyless",
        "worst-case",
    ):
        assert name in xor.index, name
    assert (results["transform"][results.scenario == "XOR"] == "xor").all()
    assert "XOR" in (xor_board / "report.md").read_text()

    rows = {r["attack"]: r for r in pq.read_table(xor_board / "privacy.parquet").to_pylist()}
    assert {r["transform"] for r in rows.values()} == {"xor"}  # --privacy-transforms xor
    assert rows["known-plaintext"]["key_recovered"] is True
    assert rows["known-plaintext"]["ssim"] == pytest.approx(1.0)
    assert rows["key-space"]["transform"] == "xor"


def test_without_the_plugin_the_name_is_refused_in_one_line(tmp_path):
    (tmp_path / "xor.toml").write_text(XOR_SCENARIO)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    done = lie_ray(
        env, "train", "--scenario-file", tmp_path / "xor.toml", "--out", tmp_path / "runs", expect=2
    )
    message = done.stderr.strip().splitlines()
    assert len(message) == 1 and "unknown transform 'xor'" in message[0]
    assert "lie_ray.transforms" in message[0]  # where a plug-in declares it
    assert not (tmp_path / "runs").exists()


def test_the_example_transform_is_exact_and_invertible():
    """The example's own test: encryption is the XOR with its mask in every block (computed
    here block by block, independently), decryption inverts it, and the float path matches."""
    import torch

    sys.path.insert(0, str(XOR_EXAMPLE))
    try:
        from lie_ray_xor import BlockXor
    finally:
        sys.path.remove(str(XOR_EXAMPLE))
    rng = np.random.default_rng(0)
    mask = rng.integers(0, 256, 4 * 4 * 3).astype(np.uint8)
    xor = BlockXor({"mask": mask}, block_size=4)
    images = rng.integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
    expected = images.copy()
    for top in range(0, 32, 4):
        for left in range(0, 32, 4):
            expected[:, top : top + 4, left : left + 4] ^= mask.reshape(4, 4, 3)
    assert np.array_equal(xor.encrypt(images), expected)
    assert np.array_equal(xor.decrypt(xor.encrypt(images)), images)
    floats = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(
        torch.round(xor.encrypt(floats) * 255).to(torch.uint8).permute(0, 2, 3, 1),
        torch.from_numpy(expected),
    )


# ---------------------------------------------------------------------------- an attack
ATTACK_SLICE = [
    "--preset",
    "smoke",
    "--scenarios",
    "Encrypted",
    "--eval-limit",
    "16",
    "--epsilons",
    "0,0.1",
    "--eval-pgd-steps",
    "2",
    "--eot-keys",
    "1",
    "--actors",
    "1",
]


@pytest.fixture(scope="module")
def attack_env(tmp_path_factory):
    """examples/wrong_key_attack installed by pip, as a user installs a plug-in."""
    return installed(ATTACK_EXAMPLE, tmp_path_factory)


def test_an_outside_attack_runs_where_named_and_joins_its_tiers_worst_case(
    attack_env, smoke_sweep, cifar_dir, tmp_path
):
    runs, key = smoke_sweep["out"], smoke_sweep["key_path"]
    common = ["--runs", runs, "--key", key, "--data", cifar_dir, *ATTACK_SLICE]
    lie_ray(attack_env, "evaluate", *common, "--attacks", "eot,wrong-key", "--evaluation",
            "full", "--out", tmp_path / "eval")  # fmt: skip
    results = pq.read_table(tmp_path / "eval" / "results.parquet").to_pandas()
    at = results[results.epsilon == 0.1].set_index("evaluation")
    assert at.loc["wrong-key", "n"] == 16 and "bpda" not in at.index  # only what was named
    # Its place: worst-case-keyless is, image by image, the clean outcome or eot or wrong-key.
    examples = pq.read_table(tmp_path / "eval" / "examples.parquet").to_pandas()
    attacked = examples[(examples.epsilon == 0.1) & (examples.evaluation != "train")]
    wrong = attacked.assign(wrong=~attacked.correct).pivot_table(
        index="id", columns="evaluation", values="wrong"
    )
    wrong = wrong.astype(bool)
    clean = attacked.groupby("id").apply(lambda g: bool((g.clean_pred != g.label).iloc[0]))
    union = wrong["eot"] | wrong["wrong-key"] | clean.reindex(wrong.index)
    assert (wrong["worst-case-keyless"] == union).all()
    keyless = attacked[attacked.evaluation == "worst-case-keyless"]
    assert set(keyless.broken_by) <= {"", "clean", "eot", "wrong-key"}
    # The report renders where the plug-in is not installed: its facts are in the record.
    bare = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PYTHONPATH")}
    (tmp_path / "eval" / "report.md").unlink()
    lie_ray(bare, "report", "--results", tmp_path / "eval")
    report = (tmp_path / "eval" / "report.md").read_text()
    adaptive = report.split("## Adaptive evaluation", 1)[1].split("\n## ", 1)[0]
    header = next(line for line in adaptive.splitlines() if line.startswith("| Scenario"))
    assert "wrong-key" in header  # a column of its own, from the record's catalogue


def test_an_outside_attacks_cost_is_in_the_estimate():
    """--estimate's count for a scenario grows by the plug-in's own cost: its PGD (3 steps,
    2 restarts: 6 gradients, a forward per restart and one to score) on each of 10 images at
    each of 2 attacked epsilons."""
    from lie_ray import attacks
    from lie_ray.app.estimate import Passes, evaluation_passes
    from lie_ray.evaluation.settings import EvalSettings
    from lie_ray.scenarios import Scenario

    sys.path.insert(0, str(ATTACK_EXAMPLE))
    try:
        from lie_ray_wrong_key import SPEC
    finally:
        sys.path.remove(str(ATTACK_EXAMPLE))
    attacks.register(SPEC)
    settings = EvalSettings(epsilons=(0.0, 0.05, 0.1), pgd_steps=3, pgd_restarts=2)
    scenario = Scenario("Encrypted", encrypted=True, key_policy="fixed")

    def count(names: tuple[str, ...]) -> Passes:
        return evaluation_passes(scenario, settings.replace(attacks=names), 10, 100, False)[0]

    more = count(("eot", "wrong-key")).counts
    less = count(("eot",)).counts
    assert more["attack"] - less["attack"] == 10 * 2 * 6
    assert more["forward"] - less["forward"] == 10 * 2 * 3


def test_an_outside_attack_through_lie_ray_evaluate(attack_env, learned, tmp_path):
    """lie_ray.evaluate(attacks=["wrong-key"]) in a process that has the plug-in installed;
    a name nobody declares is refused in one line."""
    defenders, batch = learned
    images = torch_to_uint8(batch.images[:12])
    np.save(tmp_path / "images.npy", images)
    np.save(tmp_path / "labels.npy", batch.labels[:12].numpy())
    torch_save(defenders["Encrypted"].model, tmp_path / "model.pt")
    script = f"""
import numpy as np, torch, lie_ray
from lie_ray.keys import Key
from lie_ray import transforms
from lie_ray.errors import LieRayError
here = {str(tmp_path)!r}
model = torch.load(here + "/model.pt", weights_only=False)
images, labels = np.load(here + "/images.npy"), np.load(here + "/labels.npy")
le = transforms.build("le", Key("master", bytes(range(32)), 4))
result = lie_ray.evaluate(model, images, labels, transform=le, eps=[0.1], threat="keyless",
                          attacks=["wrong-key"], pgd_steps=2, pgd_restarts=1)
print(sorted(set(result.results["evaluation"].to_pylist())))
try:
    lie_ray.evaluate(model, images, labels, transform=le, attacks=["no-such-attack"])
except LieRayError as error:
    print("refused:", error)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], env=attack_env, capture_output=True, text=True,
        timeout=600, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "['test', 'worst-case-keyless', 'wrong-key']"
    assert lines[1].startswith("refused: unknown attack 'no-such-attack'")
    assert "wrong-key" in lines[1]  # the installed plug-in is among the names offered


def torch_to_uint8(images):
    import torch

    return torch.round(images * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def torch_save(model, path):
    import torch

    torch.save(model, path)
