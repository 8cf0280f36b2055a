"""Evaluation: the gradients each attacker sees, the worst case, and a real distributed run."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from conftest import EVAL_SLICE, TRAIN_SLICE, run_attack
from PIL import Image

from lie_ray import transforms
from lie_ray.attacks import PGD, registry
from lie_ray.attacks.catalogue.eot import eot_classifier
from lie_ray.attacks.outcome import Outcome, worst_of
from lie_ray.attacks.pipeline import Defender
from lie_ray.attacks.spec import (
    PLAIN_IMAGE_TIERS,
    WORST_CASE,
    WORST_CASE_CHANNEL,
    WORST_CASE_KEYLESS,
    WORST_CASE_LEAKED,
)
from lie_ray.attacks.spec import WORST_CASE_NAMES as WORST_CASES
from lie_ray.attacks.views import OwnImages
from lie_ray.data.cifar import load_split
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.evaluation.tables import wilson_interval
from lie_ray.infra import provenance
from lie_ray.keys import generate_key
from lie_ray.keys.policies import FixedPolicy
from lie_ray.models import build_model
from lie_ray.transforms import TransformSpec

# The catalogue's groups, from the registry (never a list kept here).
ATTACKS = registry.default_attacks()
PLAIN_SPACE = [s.name for s in ATTACKS if s.tier in PLAIN_IMAGE_TIERS]
CHANNEL = [s.name for s in ATTACKS if s.tier == "channel"]
KEYLESS = [s.name for s in ATTACKS if s.tier == "keyless"]
LEAKED = [s.name for s in ATTACKS if s.tier in ("keyless", "leaked")]
RECOVERED_KEY = [s.name for s in ATTACKS if s.tier == "leaked"]
# what one key for every image allows (the leaked pairs, the key search), and what only a key
# that changes under the attacker calls for (AutoAttack rand): read from each spec's needs
FIXED_ONLY = [s.name for s in ATTACKS if s.needs & {"fixed-key", "recoverable-key"}]
RANDOMISED_ONLY = [s.name for s in ATTACKS if "randomised-key" in s.needs]
SANITY = [s.name for s in registry.sanity_runs()]  # lie_ray's own white-box runs
DOUBLED = {s.reference: s.name for s in registry.sanity_runs(ATTACKS) if s.reference in LEAKED}


@pytest.fixture
def defender():
    torch.manual_seed(0)
    model = build_model(encrypted=True, width=4, adaptation_channels=8).eval()
    return Defender(model, TransformSpec().keyed(generate_key()), FixedPolicy())


@pytest.fixture
def batch():
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (4, 3, 32, 32), generator=generator).double() / 255
    return images.float(), torch.randint(0, 10, (4,), generator=generator), np.arange(4)


def input_gradient(classifier, images, labels):
    images = images.clone().requires_grad_(True)
    return torch.autograd.grad(F.cross_entropy(classifier(images), labels), images)[0]


def test_backward_modes_change_the_gradient_not_the_forward(defender, batch):
    images, labels, ids = batch
    outputs = {
        mode: defender.classifier(ids, mode)(images) for mode in ("none", "bpda-high", "bpda-both")
    }
    torch.testing.assert_close(outputs["none"], outputs["bpda-both"])
    torch.testing.assert_close(outputs["none"], outputs["bpda-high"])
    grads = {
        mode: input_gradient(defender.classifier(ids, mode), images, labels) for mode in outputs
    }
    assert torch.count_nonzero(grads["none"]) == 0
    assert torch.count_nonzero(grads["bpda-high"]) > 0
    assert not torch.allclose(grads["bpda-high"], grads["bpda-both"])


def test_paper_protocol_pgd_cannot_move_without_gradient(defender, batch):
    images, labels, ids = batch
    attack = PGD(
        defender.classifier(ids, "none"), eps=0.1, step_size=0.01, steps=5, random_start=False
    )
    assert torch.equal(attack(images, labels), images)  # sign(0) = 0: the attack is blind


def test_eot_over_the_defenders_own_key_is_bpda(defender, batch):
    images, labels, ids = batch
    own_key = lambda: [defender.key.transform("fixed")]  # noqa: E731 (a draw of one key)
    eot = input_gradient(eot_classifier(defender.model, own_key), images, labels)
    bpda = input_gradient(defender.classifier(ids, "bpda-both"), images, labels)
    torch.testing.assert_close(eot, bpda, rtol=1e-5, atol=1e-7)


def test_worst_of_counts_an_example_wrong_if_any_attack_fools_it():
    labels = torch.tensor([0, 1, 2, 3])
    first = Outcome(torch.tensor([0, 9, 2, 3]), torch.tensor([0.1, 0.2, 0.1, 0.1]))
    second = Outcome(torch.tensor([5, 1, 2, 3]), torch.tensor([0.3, 0.1, 0.1, 0.1]))
    worst = worst_of([first, second], labels)
    assert worst.predictions.tolist() == [5, 9, 2, 3]
    assert worst.linf.tolist() == pytest.approx([0.3, 0.2, 0.1, 0.1])


def test_wilson_interval():
    low, high = wilson_interval(0, 100)
    assert low == pytest.approx(0, abs=1e-12) and high == pytest.approx(0.0370, abs=1e-4)
    low, high = wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-4) and high == pytest.approx(0.5962, abs=1e-4)


# ------------------------------------------------------------------ distributed, end to end
# The session's smoke sweep (conftest.py) evaluated every scenario on 24 test images at eps 0
# and 0.1 in Ray Data actor pools; these tests read what it wrote.
@pytest.fixture(scope="module")
def evaluation(smoke_sweep):
    return {"out": smoke_sweep["out"], "output": smoke_sweep["output"]}


def test_examples_have_one_row_per_image_per_evaluation(evaluation):
    examples = pq.read_table(evaluation["out"] / "examples.parquet").to_pandas()
    test_rows = examples[examples.evaluation != "train"]
    counts = test_rows.groupby(["scenario", "evaluation", "epsilon"]).id.agg(["count", "nunique"])
    assert (counts["count"] == 24).all() and (counts["nunique"] == 24).all()
    plain = {"test", "pgd", "gradient-free", "autoattack", *WORST_CASES, *SANITY}
    expected = {"Plain": plain | {DOUBLED["gradient-free"]}}
    every = {"test", *PLAIN_SPACE, *CHANNEL, *WORST_CASES, *SANITY, *DOUBLED.values()}
    encrypted = every - set(RANDOMISED_ONLY)
    # Fresh keys per mini-batch (and id groups at test): no leaked pair reveals the key of
    # another image and no one key is there to search for, so the recovered-key attacks and
    # the key search do not apply to the DK scenarios; AutoAttack rand does.
    expected.update(
        {name: every - set(FIXED_ONLY) for name in ("Encrypted-DK", "Encrypted-Adv-DK")}
    )
    for scenario, group in test_rows.groupby("scenario"):
        assert set(group.evaluation) == expected.get(scenario, encrypted), scenario
    train_rows = examples[examples.evaluation == "train"]
    # the defender's part of the train split: its limit, never the attacker's held-out images
    assert train_rows.groupby("scenario").id.nunique().eq(TRAIN_SLICE["train_limit"]).all()
    # Scored as deployed: whole 8-bit levels, and within eps exactly (float32: 1e-6); the
    # channel attacker's too, in ciphertext space.
    assert (examples.linf <= examples.epsilon + 1e-6).all()
    levels = examples.linf * 255
    assert (abs(levels - levels.round()) < 1e-3).all()
    # Each 2x run met the images its attack met at the headline eps, no others.
    for attack, doubled in DOUBLED.items():
        for scenario, group in test_rows[test_rows.epsilon == 0.1].groupby("scenario"):
            if doubled in set(group.evaluation):
                met = group.set_index(["evaluation", "id"]).attacked
                assert met[attack].equals(met[doubled]), (scenario, attack)


def test_each_worst_case_unites_its_attackers_evaluations_and_the_clean_outcome(evaluation):
    # Per image: worst-case-keyless is wrong exactly when the clean prediction or a keyless
    # attack was (on Plain, with no key to withhold, any plain-image attack), never a
    # leaked-pair one; worst-case-leaked when a keyless or leaked-pair one was; worst-case when
    # the clean prediction or any plain-image attack was (never encrypted-input);
    # worst-case-channel when the clean prediction or any attack at all was.
    examples = pq.read_table(evaluation["out"] / "examples.parquet").to_pandas()
    attacked = examples[
        (examples.epsilon > 0) & ~examples.evaluation.isin([*SANITY, *DOUBLED.values()])
    ]
    wrong = attacked.assign(wrong=~attacked.correct).pivot_table(
        index=["scenario", "epsilon", "id"], columns="evaluation", values="wrong"
    )
    clean_wrong = (
        (attacked.clean_pred != attacked.label)
        .groupby([attacked.scenario, attacked.epsilon, attacked.id])
        .first()
        .reindex(wrong.index)
    )
    assert clean_wrong.any()  # the smoke models misclassify some images already

    def union(columns, frame=wrong):
        return frame[[c for c in columns if c in frame]].max(axis=1).astype(bool) | clean_wrong

    plain_model = wrong.index.get_level_values("scenario") == "Plain"
    for worst_case, attacks in ((WORST_CASE_KEYLESS, KEYLESS), (WORST_CASE_LEAKED, LEAKED)):
        expected = union(attacks)
        expected[plain_model] = union(PLAIN_SPACE)[plain_model]
        assert (wrong[worst_case].astype(bool) == expected).all(), worst_case
    assert (wrong[WORST_CASE].astype(bool) == union(PLAIN_SPACE)).all()
    assert (wrong[WORST_CASE_CHANNEL].astype(bool) == union((*PLAIN_SPACE, *CHANNEL))).all()
    encrypted = wrong.xs("Encrypted", level="scenario")
    assert set(CHANNEL) <= set(encrypted.dropna(axis=1).columns)
    results = pq.read_table(evaluation["out"] / "results.parquet").to_pandas()
    assert ((results.ci_low <= results.error) & (results.error <= results.ci_high)).all()


def error(defender, batch, images=None) -> float:
    predictions = defender.predict(batch.images if images is None else images, batch.ids)
    return (predictions != batch.labels).float().mean().item()


def test_pgd_at_the_papers_eps_breaks_a_plain_model_that_learned(learned):
    # PGD (eps 0.1, step 0.01, the paper's 20 steps) must fool it on nearly every image.
    defenders, batch = learned
    plain = defenders["Plain"]
    adversarial = PGD(plain.model, eps=0.1, step_size=0.01, steps=20)(batch.images, batch.labels)
    assert error(plain, batch) < 0.8  # it learned: chance is 0.9
    assert error(plain, batch, adversarial) >= 0.95


def test_autoattack_wrapper_passes_real_gradients(learned):
    # torchattacks' AutoAttack through lie_ray's nn.Module wrapper ('light': 10 steps, one
    # target class, 50 Square queries): on Plain it must do what PGD does; through the cipher,
    # with BPDA backward, it must beat random +-eps noise by far.
    defenders, batch = learned
    settings = EvalSettings(autoattack="light", autoattack_steps=10, square_queries=50)
    assert (
        run_attack(defenders["Plain"], "autoattack", batch, 0.1, settings)
        .predictions.ne(batch.labels)
        .float()
        .mean()
        >= 0.95
    )
    encrypted = defenders["Encrypted"]
    torch.manual_seed(0)
    noisy = (batch.images + 0.1 * torch.randn_like(batch.images).sign()).clamp(0, 1)
    outcome = run_attack(encrypted, "autoattack", batch, 0.1, settings)
    fooled = outcome.predictions != batch.labels
    survived_noise = encrypted.predict(noisy, batch.ids) == batch.labels
    assert survived_noise.sum() >= 10  # the model is not simply fooled by any noise
    assert fooled.float().mean() >= 0.95
    assert fooled[survived_noise].float().mean() >= 0.75  # it breaks what noise cannot
    assert (outcome.linf <= 0.1).all()
    assert not outcome.linf.requires_grad  # the actor turns it into NumPy
    assert not encrypted.model.training  # the library must not leave BatchNorm in train mode


def test_each_reading_of_the_papers_protocol_and_bpda_includes_identity(learned):
    defenders, batch = learned
    torch.manual_seed(0)  # random starts independent of the tests that ran before this one
    encrypted = defenders["Encrypted"]
    settings = EvalSettings(pgd_steps=5, pgd_restarts=1)
    done = {"bpda-identity": run_attack(encrypted, "bpda-identity", batch, 0.1, settings)}
    worst = run_attack(encrypted, "bpda", batch, 0.1, settings, done)
    fooled_identity = done["bpda-identity"].predictions != batch.labels
    assert (worst.predictions != batch.labels)[fooled_identity].all()  # bpda's worst includes it
    literal = run_attack(encrypted, "paper-literal", batch, 0.1, settings)
    for outcome in (literal, done["bpda-identity"], worst):
        assert (outcome.linf <= 0.1).all()
    # With its surrogates, BPDA beats the zero-gradient reading by far. (The identity alone
    # need not: it ignores where the cipher moves each nibble.)
    paper_pgd = run_attack(encrypted, "pgd", batch, 0.1, settings)
    assert (worst.predictions != batch.labels).float().mean() >= (
        paper_pgd.predictions != batch.labels
    ).float().mean() + 0.1


def test_a_plain_eps_of_0_1_moves_ciphertext_bytes_by_far_more():
    # Why encrypted-input is no bound on plain-image attacks: a plain step of 25/255 (< 0.1)
    # changes a low nibble, which the cipher puts in some byte's HIGH half.
    cipher = transforms.build("le", generate_key())
    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (64, 3, 32, 32), generator=generator)
    step = 25 * (2 * torch.randint(0, 2, levels.shape, generator=generator) - 1)
    images, moved = levels.float() / 255, (levels + step).clamp(0, 255).float() / 255
    assert (moved - images).abs().max() <= 0.1
    change = (cipher.encrypt(moved) - cipher.encrypt(images)).abs().flatten(1).amax(1)
    assert change.max() >= 0.9  # 254/255 here
    assert change.min() > 0.5  # in every image, not just one


def test_report_renders_with_its_pictures(evaluation):
    report = (evaluation["out"] / "report.md").read_text()
    # Table I's clean test column is results.parquet's, scenario by scenario (a report built
    # from other numbers, or none, fails here).
    results = pq.read_table(evaluation["out"] / "results.parquet").to_pandas()
    test_error = results[results.evaluation == "test"].set_index("scenario").error
    section = report.split("## Table I", 1)[1].split("\n## ", 1)[0]
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in line.strip("|").split("|")]
            for line in section.splitlines()
            if line.startswith("|") and not line.startswith("|---")
        )
    }
    assert set(test_error.index) <= set(rows)
    for scenario, value in test_error.items():
        assert rows[scenario][3] == f"{value:.3f}", scenario
    for picture in ("curves.png", "gallery.png"):
        assert f"({picture})" in report
        with Image.open(evaluation["out"] / picture) as png:
            assert png.size[0] > 100 and png.size[1] > 100


def test_gradient_free_keys_every_row_with_its_own_sub_key():
    # Id-group keys: ids 0..3 and 4..7 are two key groups; the Square attack must encrypt
    # each row with its group's key even while it queries shrinking subsets of rows.
    from lie_ray.attacks.outcome import Batch
    from lie_ray.keys.policies import IdGroupPolicy

    torch.manual_seed(0)
    model = build_model(encrypted=True, width=4, adaptation_channels=8).eval()
    defender = Defender(model, TransformSpec().keyed(generate_key()), IdGroupPolicy(batch_size=4))
    seen = []
    original_encrypt = defender.encrypt

    def recording_encrypt(plain, ids, backward="none"):
        seen.append(set(defender.policy.labels(np.asarray(ids), "test")))
        return original_encrypt(plain, ids, backward)

    defender.encrypt = recording_encrypt
    images = torch.rand(8, 3, 32, 32)
    batch = Batch(images, torch.randint(0, 10, (8,)), np.arange(8))
    outcome = run_attack(defender, "gradient-free", batch, 0.1, EvalSettings(square_queries=5))
    assert (outcome.linf <= 0.1).all()
    assert {frozenset(s) for s in seen} >= {
        frozenset({"batch/test/0"}),
        frozenset({"batch/test/1"}),
    }
    assert all(len(s) == 1 for s in seen[:-1])  # every attack query used one key


@pytest.mark.parametrize("eps", [2 / 255, 8 / 255, 0.1, 1.0])
def test_deployed_images_are_8_bit_and_within_eps_exactly(eps):
    # Oracle by integers: plain levels p, any float perturbation; the deployed level must be
    # p + round(delta) with |round(delta)| <= floor(255 eps), clipped to 0..255.
    from lie_ray.attacks.outcome import deployed

    generator = torch.Generator().manual_seed(0)
    levels = torch.randint(0, 256, (64, 3, 8, 8), generator=generator)
    images = levels.float() / 255
    adversarial = (
        images + (2 * torch.rand(images.shape, generator=generator) - 1) * eps * 1.3
    ).clamp(0, 1)
    out = deployed(adversarial, images, eps)
    out_levels = out * 255
    assert torch.equal(out_levels, out_levels.round())
    allowed = int(np.floor(eps * 255 + 1e-6))
    expected = (levels + ((adversarial - images) * 255).round().clamp(-allowed, allowed)).clamp(
        0, 255
    )
    assert torch.equal(out_levels.round().long(), expected.long())
    assert (out - images).abs().max() <= eps + 1e-7
    if eps == 0.1:  # rounding the float image instead would reach 26/255 > 0.1
        assert (out_levels.round() - levels).abs().max() == 25


def test_eot_draws_fresh_keys_at_every_step_reproducibly():
    from lie_ray.attacks.catalogue.eot import AttackerKeys

    spec = TransformSpec().resolved(4)
    probe = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))

    def fingerprint(ciphers):
        return [c.encrypt(probe).sum().item() for c in ciphers]

    keys = AttackerKeys(spec, count=3, seed=7)
    draws = [fingerprint(keys()) for _ in range(4)]
    assert len({value for draw in draws for value in draw}) == 12  # 4 steps x 3 keys, all new
    assert [fingerprint(AttackerKeys(spec, 3, 7)()) for _ in range(1)] == draws[:1]
    assert fingerprint(AttackerKeys(spec, 3, 8)()) != draws[0]  # the seed is the attacker's

    calls = []
    model = build_model(encrypted=True, width=4, adaptation_channels=8).eval()

    def counting():
        return calls.append(1) or keys()

    attack = PGD(eot_classifier(model, counting), eps=0.1, step_size=0.01, steps=5, restarts=2)
    attack(probe.repeat(2, 1, 1, 1), torch.tensor([0, 1]))
    assert len(calls) == 2 * (5 + 1)  # every step of every restart, and each restart's score


def test_recovered_key_with_enough_pairs_is_the_white_box_attack(learned, cifar_dir):
    # LE's key is determined by one leaked pair: PGD through the recovered key must be the
    # white-box PGD through the defender's own key, image for image, given the same seed (the
    # engine gives each attack its own; here both runs are called with one).
    from lie_ray.attacks.catalogue.recovered_key import recovered_key
    from lie_ray.attacks.catalogue.sanity import white_box
    from lie_ray.evaluation.engine import Engine

    defenders, batch = learned
    encrypted = defenders["Encrypted"]
    own = load_split(cifar_dir, "train").images[-4:]  # not the learned model's 2048
    settings = EvalSettings(pgd_steps=5, pgd_restarts=1, pba_steps=2, key_search_budget=2)
    engine = Engine(encrypted, settings, own)  # the leaked view's one pair: own[0], encrypted
    eps = 25 / 255
    recovered = recovered_key(engine.views["recovered-key-1"], batch, eps, settings)
    reference = white_box(engine.views["sanity-pgd"], batch, eps, settings)
    assert torch.equal(recovered.predictions, reference.predictions)
    assert (recovered.predictions != batch.labels).float().mean() >= 0.5


def test_more_leaked_pairs_that_recover_the_same_key_are_not_attacked_again(learned, cifar_dir):
    # A flat grey first pair tells LE's recovery nothing; the real images after it determine
    # the key. So k=1 has a key of its own, k=2 and k=4 share one, and recovered-key-4 hands
    # back recovered-key-2's outcome on the rows it covers without a single network pass.
    from lie_ray.evaluation.cascade import Row
    from lie_ray.evaluation.engine import Engine
    from lie_ray.keys import FIXED_LABEL

    defenders, batch = learned
    encrypted = defenders["Encrypted"]
    train = load_split(cifar_dir, "train")
    own = train.images[-4:].copy()
    own[0] = 128
    leaked = tuple(f"recovered-key-{k}" for k in (1, 2, 4))
    settings = EvalSettings(pgd_steps=3, pgd_restarts=1, attacker_images=4, attacks=leaked)
    # every one of its 4 images leaks (nothing held out to judge: no fit here)
    engine = Engine(encrypted, settings, OwnImages(own, train.labels[-4:], fit=4))
    ciphers = {k: engine.views[f"recovered-key-{k}"].prepared for k in (1, 2, 4)}
    assert ciphers[1].fingerprint != ciphers[2].fingerprint == ciphers[4].fingerprint
    probe = load_split(cifar_dir, "test").images[:8]  # k=2's key is the defender's
    assert np.array_equal(
        ciphers[2].encrypt(probe), encrypted.key.transform(FIXED_LABEL).encrypt(probe)
    )
    part = batch.subset(np.arange(10))
    rows = np.arange(10)

    def run(name, done):
        return engine.run(engine.by_name[name], part, 0.1, rows, done, settings)

    two = run("recovered-key-2", {})
    passes = []
    original = encrypted.model.forward
    encrypted.model.forward = lambda x: passes.append(len(x)) or original(x)
    try:
        four = run("recovered-key-4", {"recovered-key-2": Row("recovered-key-2", 0.1, rows, two)})
        assert passes == [] and four.reused and not two.reused  # reused: the cost model
        assert torch.equal(four.predictions, two.predictions)  # leaves these rows out
        assert torch.equal(four.linf, two.linf)
        run("recovered-key-2", {"recovered-key-1": Row("recovered-key-1", 0.1, rows, two)})
        assert sum(passes) > 0  # another key: it runs
    finally:
        del encrypted.model.forward


def test_the_keyless_fits_are_recorded_once_per_scenario_with_their_figures(evaluation):
    """Every encrypted scenario's record holds what its bypass and key search reached, fitted
    on the attacker's images and judged on the rest of its held-out part; the figures only
    the true key can score are there for the fixed key alone."""
    record = provenance.record_of(pq.read_schema(evaluation["out"] / "results.parquet"))
    fits = record["fits"]
    assert set(fits) == {"Encrypted", "Encrypted-Adv", "Encrypted-DK", "Encrypted-Adv-DK"}
    for scenario, attacks in fits.items():
        bypass = attacks["pba"]
        assert bypass["images"] == EVAL_SLICE["attacker_images"]
        assert bypass["judged"] == 512 - EVAL_SLICE["attacker_images"]
        assert 0 <= bypass["agreement"] <= 1 and bypass["chosen"] in bypass["variants"]
        fixed = scenario in ("Encrypted", "Encrypted-Adv")
        assert ("key-search" in attacks) == fixed and ("gradient_cosine" in bypass) == fixed
        if fixed:
            assert -1 <= bypass["gradient_cosine"] <= 1
            assert 0 <= attacks["key-search"]["key_share"] <= 1
            assert attacks["key-search"]["evaluations"] <= EVAL_SLICE["key_search_budget"]
    report = (evaluation["out"] / "report.md").read_text()
    assert "## The keyless attacker's fits" in report


def test_each_worst_case_keeps_the_image_that_broke_it_as_deployed(learned):
    """An engine batch on the learned Encrypted model at eps 0.1, the paper's PGD (which the
    cipher's zero gradient stalls) and the channel attacker's PGD on the ciphertext, which
    decides the channel worst case: every worst-case row an attack broke carries
    its image, 8-bit HWC, which classified here (a plain image through the pipeline, a
    ciphertext through the network alone) draws the row's recorded prediction and lies within
    25 levels of its plain image (of that image's ciphertext); no other row carries one."""
    from lie_ray.evaluation.engine import Engine

    defenders, batch = learned
    defender = defenders["Encrypted"]
    settings = EvalSettings(
        epsilons=(0.1,), pgd_steps=5, pgd_restarts=1, attacks=("pgd", "encrypted-input")
    ).replace(sanity=False, mode="full")
    part = batch.subset(np.arange(32))
    columns = Engine(defender, settings).evaluate_batch(part, "test", "Encrypted")
    worst = np.isin(columns["evaluation"], WORST_CASES)
    kept = np.array([len(b) > 0 for b in columns["image"]])
    made = worst & ~np.isin(columns["broken_by"], ["", "clean"])
    assert (kept == made).all() and kept.any()
    assert "cipher" in set(columns["space"][kept])  # the channel worst case's ciphertexts
    plain_levels = np.round(part.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.int16)
    sent = defender.encrypt(part.images, part.ids)
    sent_levels = np.round(sent.permute(0, 2, 3, 1).numpy() * 255).astype(np.int16)
    position = {int(i): k for k, i in enumerate(part.ids)}
    for row in np.flatnonzero(kept):
        image = np.frombuffer(columns["image"][row], np.uint8).reshape(32, 32, 3)
        k = position[int(columns["id"][row])]
        x = torch.from_numpy(image.copy()).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            if columns["space"][row] == "cipher":
                predicted, origin = defender.model(x).argmax(1), sent_levels[k]
            else:
                predicted, origin = defender.predict(x, part.ids[k : k + 1]), plain_levels[k]
        assert int(predicted) == columns["adv_pred"][row]
        assert np.abs(image.astype(np.int16) - origin).max() <= 25
