"""The Python API: ``lie_ray.evaluate`` on models defined here, ``lie_ray.load`` on a sweep's
models attacked by torchattacks, and errors a caller can act on."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT

import lie_ray
from lie_ray import transforms
from lie_ray.attacks.spec import WORST_CASE_NAMES as WORST_CASES
from lie_ray.errors import LieRayError
from lie_ray.keys import Key, save_key

LEARNED_KEY = Key("master", bytes(range(32)), block_size=4)  # the `learned` fixture's key
EPS = 8 / 255
FAST = {
    "pgd_steps": 5,
    "square_queries": 20,
    "autoattack_steps": 3,
    "pba_steps": 8,
    "key_search_budget": 8,
    "eot_keys": 2,
    "sanity": False,
}


def same_rows(a, b) -> bool:
    """Two example tables hold the same rows, in any order (NaN equal to NaN)."""
    keys = ["evaluation", "epsilon", "id"]

    def frame(t):
        return t.to_pandas().sort_values(keys).reset_index(drop=True)

    return frame(a).equals(frame(b))


def as_uint8(batch) -> np.ndarray:
    return torch.round(batch.images * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def test_evaluate_own_model_gives_the_results_table(learned, cifar_dir):
    """A plain model defined in the test: the table has results.parquet's columns, its clean
    row is the error the model really makes, eps 0 changes nothing, and every worst case is
    at least each attack it unites and grows with eps."""
    defenders, batch = learned
    model = defenders["Plain"].model
    images, labels = as_uint8(batch)[:40], batch.labels[:40]
    result = lie_ray.evaluate(model, images, labels, eps=[2 / 255, EPS], **FAST)
    print(result)
    assert result.results.column_names == [
        "scenario",
        "transform",
        "evaluation",
        "epsilon",
        "n",
        "error",
        "ci_low",
        "ci_high",
        "max_linf",
        "run_id",
        "key_fingerprint",
    ]
    with torch.no_grad():
        wrong = (model(batch.images[:40]).argmax(1) != labels).float().mean().item()
    assert result.error("test", 0.0) == pytest.approx(wrong)
    rows = result.results.to_pylist()
    assert {r["evaluation"] for r in rows} == {
        "test",
        "pgd",
        "gradient-free",
        "autoattack",
        *WORST_CASES[:3],
    }
    for r in rows:
        if r["epsilon"] == 0:
            assert r["error"] == pytest.approx(wrong)
        assert r["max_linf"] <= r["epsilon"] + 1e-6
    # PGD breaks more in the larger ball (an attack, not a union carried up the eps ladder);
    # the worst case is, image by image, the clean error or any attack's (an oracle from the
    # per-image rows, not the engine's union).
    assert result.error("pgd", EPS) > max(result.error("pgd", 2 / 255), wrong)
    frame = result.examples.to_pandas()
    attacked = frame[frame.epsilon == EPS].pivot_table(
        index="id", columns="evaluation", values="correct"
    )
    union = ~attacked[["pgd", "gradient-free", "autoattack"]].astype(bool).all(axis=1)
    clean_wrong = frame[frame.evaluation == "test"].set_index("id").correct.eq(False)
    assert ((union | clean_wrong) == ~attacked["worst-case"].astype(bool)).all()
    assert result.record["data"]["images"] == 40 and result.record["key_fingerprint"] == ""
    examples = result.examples.to_pandas()
    assert len(examples[(examples.evaluation == "pgd") & (examples.epsilon == EPS)]) == 40


class SpyLE(transforms.transform_class("le")):
    """LE that records every backward pass asked of it: which gradients an attack took."""

    asked: list = []

    def with_grad(self, images, backward=None):
        SpyLE.asked.append(backward)
        return super().with_grad(images, backward)


def test_threats_give_attacks_only_what_their_attacker_has(learned):
    """The keyless attacker only queries the defender's cipher (backward 'none'); it never
    differentiates through the key. The with-key attacker does (BPDA surrogates), and its
    worst case unites what it ran, image by image."""
    defenders, batch = learned
    model = defenders["Encrypted"].model
    images, labels = as_uint8(batch)[:24], batch.labels[:24]
    spy = SpyLE(transforms.build("le", LEARNED_KEY).key_arrays(), block_size=4)
    own = as_uint8(batch)[60:92]  # attacker's images: never the ones attacked
    SpyLE.asked.clear()
    keyless = lie_ray.evaluate(
        model,
        images,
        labels,
        transform=spy,
        eps=[EPS],
        threat="keyless",
        attacker_images=own,
        plain_model=defenders["Plain"].model,
        cascade=False,
        **FAST,
    )
    assert set(SpyLE.asked) == {"none"}
    # the fits were scored against the key afterwards, on a copy of the key holder's transform
    assert -1 <= keyless.record["fits"]["pba"]["gradient_cosine"] <= 1
    assert {r["evaluation"] for r in keyless.results.to_pylist()} == {
        "test",
        "eot",
        "transfer",
        "gradient-free",
        "pba",
        "key-search",
        "worst-case-keyless",
    }  # no leaked pair: the recovered-key attacks are the leaked attacker's
    SpyLE.asked.clear()
    with_key = lie_ray.evaluate(
        model,
        images,
        labels,
        transform=spy,
        eps=[EPS],
        attacks=["bpda-identity", "eot"],
        cascade=False,
        **FAST,
    )
    assert "identity" in SpyLE.asked
    examples = with_key.examples.to_pandas().set_index(["evaluation", "epsilon", "id"]).sort_index()
    worst = examples.loc[("worst-case", EPS)].correct
    for member in ("eot", "bpda-identity"):  # an image either breaks is broken for the union
        broken = ~examples.loc[(member, EPS)].correct
        assert not (broken & worst).any()
    assert len(worst) == 24 and not set(examples.index.get_level_values(0)) & {
        "pba",
        "transfer",
        "gradient-free",
        "worst-case-channel",
    }


def test_transform_by_name_and_by_object_agree_exactly(learned):
    """``transform='le', key=Key`` and the same LE object give the same table, row by row, and
    the record names the key by fingerprint only."""
    defenders, batch = learned
    model = defenders["Encrypted"].model
    images, labels = as_uint8(batch)[:16], batch.labels[:16]
    by_name = lie_ray.evaluate(
        model, images, labels, transform="le", key=LEARNED_KEY, eps=[EPS], attacks="paper", **FAST
    )
    by_object = lie_ray.evaluate(
        model,
        images,
        labels,
        transform=transforms.build("le", LEARNED_KEY),
        eps=[EPS],
        attacks="paper",
        **FAST,
    )
    assert same_rows(by_name.examples, by_object.examples)
    le = transforms.build("le", LEARNED_KEY)
    assert by_name.record["key_fingerprint"] == LEARNED_KEY.fingerprint  # as results.parquet
    assert by_object.record["key_fingerprint"] == le.fingerprint  # no master key: its own
    assert (
        by_name.record["transform_fingerprint"]
        == by_object.record["transform_fingerprint"]
        == le.fingerprint
    )
    assert bytes(range(32)).hex() not in str(by_name.record)


def test_evaluate_on_ray_equals_in_process(learned, ray_cluster, tmp_path):
    """``ray=True``: the same batches on the actor pool, the key opened from its file in each
    actor; every example row equals the in-process one."""
    defenders, batch = learned
    save_key(LEARNED_KEY, tmp_path / "key.json")
    model = defenders["Encrypted"].model
    images, labels = as_uint8(batch)[:32], batch.labels[:32]
    settings = dict(FAST, batch_size=16)
    here = lie_ray.evaluate(
        model,
        images,
        labels,
        transform="le",
        key=tmp_path / "key.json",
        eps=[EPS],
        attacks=["pgd", "bpda-identity", "eot"],
        **settings,
    )
    there = lie_ray.evaluate(
        model,
        images,
        labels,
        transform="le",
        key=tmp_path / "key.json",
        eps=[EPS],
        attacks=["pgd", "bpda-identity", "eot"],
        ray=True,
        **settings,
    )
    assert same_rows(there.examples, here.examples)


@pytest.mark.parametrize(
    "call, message",
    [
        (dict(images=np.full((4, 32, 32, 3), 0.5, np.float32)), "uint8 NHWC"),
        (dict(images=torch.full((4, 3, 32, 32), 0.3)), "8-bit levels"),
        (dict(labels=np.zeros(3, np.int64)), "4 images but 3 labels"),
        (dict(attacks=["pgd", "fgsm"]), "unknown attack 'fgsm'"),
        (dict(transform="le"), "needs the key the model was trained with"),
        (
            dict(transform="le", key=LEARNED_KEY, attacks=["bpda"], threat="keyless"),
            "not in the keyless attacker's reach",
        ),
        (dict(transform="le", key=LEARNED_KEY, attacks=["pba"]), "needs attacker_images="),
        (dict(transform="le", key=LEARNED_KEY, ray=True), "must not travel to Ray actors"),
        (dict(threat="insider"), "unknown threat 'insider'"),
        (dict(pgd_step=3), "unknown evaluation setting(s) ['pgd_step']"),
    ],
)
def test_bad_calls_say_what_to_do(call, message):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    arguments = dict(images=np.zeros((4, 32, 32, 3), np.uint8), labels=np.zeros(4, np.int64))
    arguments.update(call)
    with pytest.raises(LieRayError) as error:
        lie_ray.evaluate(model, arguments.pop("images"), arguments.pop("labels"), **arguments)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


AGREEMENT_IMAGES = 256


def test_loaded_defender_is_the_evaluated_model_and_torchattacks_agree(smoke_sweep):
    """``lie_ray.load`` gives the sweep's defenders as modules: their clean predictions are
    those in examples.parquet, image by image; torchattacks' PGD runs on them as they are,
    and its error agrees with lie_ray's PGD on the same module and images, within three
    standard errors on 256 images."""
    import pyarrow.parquet as pq
    import torchattacks

    from lie_ray.data.cifar import load_split

    out = smoke_sweep["out"]
    examples = pq.read_table(out / "examples.parquet").to_pandas()
    test_split = load_split(recorded_data(out), "test").head(AGREEMENT_IMAGES)
    images = (
        torch.from_numpy(test_split.images.copy()).permute(0, 3, 1, 2).float() / 255
    ).contiguous()
    labels = torch.from_numpy(test_split.labels).long()
    eps = 8 / 255  # short of saturation, where two attacks agreeing would say little
    for scenario in ("Plain", "Encrypted"):
        model = lie_ray.load(out, scenario)
        assert ("key=" in repr(model)) == (scenario == "Encrypted")
        rows = examples[(examples.scenario == scenario) & (examples.evaluation == "test")]
        ids = rows.id.to_numpy().copy()  # writable: torch indexes with it
        with torch.no_grad():
            assert (model(images[ids]).argmax(1).numpy() == rows.clean_pred.to_numpy()).all()
        # The loaded module attacked as it is, by torchattacks and by lie_ray's PGD (plain
        # autograd through the module: the key holder's gradient), same steps and ball.
        attack = torchattacks.PGD(model, eps=eps, alpha=eps / 10, steps=5, random_start=True)
        adversarial = attack(images, labels)
        with torch.no_grad():
            theirs = (model(adversarial).argmax(1) != labels).float().mean().item()
        ours = lie_ray.evaluate(
            model,
            test_split.images,
            test_split.labels,
            eps=[eps],
            attacks=["pgd"],
            pgd_steps=5,
            sanity=False,
        ).error("pgd", eps)
        p = (theirs + ours) / 2
        tolerance = 3 * (2 * p * (1 - p) / AGREEMENT_IMAGES) ** 0.5 + 2 / AGREEMENT_IMAGES
        assert abs(theirs - ours) <= tolerance, (scenario, theirs, ours, tolerance)
        assert 0.05 < ours < 0.99  # away from both ends, where agreement is cheap


def test_examples_run_as_a_user_runs_them(smoke_sweep, cifar_dir):
    """examples/: the notebook-style walk through a model of one's own, and torchattacks' PGD
    and AutoAttack (FAB in it on a batch of 8) on a trained scenario beside lie_ray's own
    outcomes."""
    walk = subprocess.run(
        [
            sys.executable,
            "examples/evaluate_your_model.py",
            "--data",
            str(cifar_dir),
            "--images",
            "32",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert walk.returncode == 0, walk.stderr[-3000:]
    assert "worst-case-keyless" in walk.stdout and "what broke each image first" in walk.stdout
    attack = subprocess.run(
        [
            sys.executable,
            "examples/attack_a_trained_model.py",
            str(smoke_sweep["out"]),
            "--images",
            "8",
            "--eps",
            "0.1",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert attack.returncode == 0, attack.stderr[-3000:]
    figures = {
        name: float(value)
        for name, value in re.findall(r"^  (.+?)\s+([0-9.]+)$", attack.stdout, re.M)
    }
    # Not "AutoAttack >= clean" (the library hands back the clean image where it fails, so
    # that holds by construction): both AutoAttacks at least as strong as PGD-20, bar an image.
    for name in ("torchattacks AutoAttack (standard)", "AutoAttack, Croce & Hein's settings"):
        assert figures[name] >= figures["torchattacks PGD-20"] - 1 / 8, (name, figures)


def recorded_data(out):
    """The data directory the sweep read, from its own record."""
    import json

    import pyarrow.parquet as pq

    record = json.loads(pq.read_schema(out / "results.parquet").metadata[b"lie_ray.record"])
    return record["data"]["directory"]
