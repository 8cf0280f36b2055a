"""The evaluation cascade: the same worst cases as every attack on every image, for less.

The oracle is full mode on the whole batch at once; the cascade runs on the same images split
into two chunks, so the comparison also shows that an image's outcome does not depend on the
batch it was attacked in (random starts and library attacks are seeded per image id)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from lie_ray.attacks import PGD, deployed, registry
from lie_ray.attacks.spec import WORST_CASE_NAMES as WORST_CASES
from lie_ray.data.cifar import load_split
from lie_ray.evaluation.actor import EvaluateShard
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.settings import EvalSettings

PAPER_READINGS = [s.name for s in registry.default_attacks() if s.role == "paper-reading"]

SETTINGS = EvalSettings(
    epsilons=(0.0, 8 / 255, 0.1),  # 0.1: 25.5 levels asked, 25 given (the rounding case)
    pgd_steps=3,
    pgd_restarts=2,
    eot_keys=1,
    square_queries=8,
    autoattack="light",
    autoattack_steps=2,
    attacker_images=16,
    pba_steps=8,
    key_search_budget=8,
    sanity=False,
    torch_threads=1,
)
IMAGES = 40


def shard(learned, cifar_dir, mode: str) -> EvaluateShard:
    defenders, _ = learned
    attacker = load_split(cifar_dir, "train").images[-64:]  # the held-out end of the split
    settings = SETTINGS.replace(mode=mode)
    evaluator = EvaluateShard({}, None, settings, None, attacker)
    plain, encrypted = defenders["Plain"], defenders["Encrypted"]
    evaluator.engines = {
        "Plain": Engine(plain, settings, attacker),
        "Encrypted": Engine(encrypted, settings, attacker, plain.model),
    }
    return evaluator


def evaluated(evaluator: EvaluateShard, scenario: str, cifar_dir, chunks: int) -> pd.DataFrame:
    test = load_split(cifar_dir, "test").head(IMAGES)
    parts = [
        evaluator.evaluate_chunk(
            scenario, "test", test.images[rows], test.labels[rows], test.ids[rows]
        )
        for rows in np.array_split(np.arange(IMAGES), chunks)
    ]
    return (
        pd.concat([pd.DataFrame(part) for part in parts])
        .set_index(["evaluation", "epsilon", "id"])
        .sort_index()
    )


@pytest.mark.parametrize("scenario", ["Plain", "Encrypted"])
def test_the_cascades_worst_cases_are_full_modes_exactly(learned, cifar_dir, scenario):
    full = evaluated(shard(learned, cifar_dir, "full"), scenario, cifar_dir, chunks=1)
    cascade = evaluated(shard(learned, cifar_dir, "cascade"), scenario, cifar_dir, chunks=2)
    assert full.index.equals(cascade.index)  # one row per image per evaluation, either way
    worst = full.index.get_level_values("evaluation").isin(WORST_CASES)
    for column in ("correct", "adv_pred", "linf", "broken_by", "broken_at"):
        pd.testing.assert_series_equal(full[worst][column], cascade[worst][column])
    # Table I's readings ran on every image in both modes, with the same outcomes.
    readings = full.index.get_level_values("evaluation").isin(PAPER_READINGS)
    assert cascade[readings].attacked.all()
    pd.testing.assert_series_equal(full[readings].adv_pred, cascade[readings].adv_pred)
    # The cascade skipped work: fewer (attack, image) pairs than full mode's, which ran all.
    attacked = full.index.get_level_values("epsilon") > 0
    assert full[attacked & ~worst].attacked.all()
    assert cascade[attacked & ~worst].attacked.sum() < full[attacked & ~worst].attacked.sum()
    # A union carried up the ladder: broken at 8/255, broken at 0.1 with what broke it first.
    small, large = (
        cascade.xs(("worst-case", e), level=("evaluation", "epsilon")) for e in (8 / 255, 0.1)
    )
    assert (~small.correct <= ~large.correct).all()
    early = ~small.correct
    assert (large[early].broken_by == small[early].broken_by).all()
    assert set(large.broken_at.dropna()) <= {0.0, 8 / 255, 0.1}
    assert (large.broken_at == 0.1).any()  # and some only at 0.1


def test_pgds_random_start_belongs_to_the_image_not_the_batch(learned):
    defenders, batch = learned
    attack = PGD(defenders["Plain"].model, eps=0.03, step_size=0.01, steps=2, seed=7)
    together = attack(batch.images[:6], batch.labels[:6], ids=batch.ids[:6])
    alone = torch.cat(
        [
            attack(batch.images[i : i + 1], batch.labels[i : i + 1], ids=batch.ids[i : i + 1])
            for i in (5, 2)
        ]
    )
    torch.testing.assert_close(alone, together[[5, 2]], rtol=0, atol=1e-6)
    other_seed = PGD(defenders["Plain"].model, eps=0.03, step_size=0.01, steps=2, seed=8)
    assert not torch.equal(
        other_seed(batch.images[:6], batch.labels[:6], ids=batch.ids[:6]), together
    )


@pytest.mark.parametrize("attack", ["square", "autoattack"])
def test_a_library_attacks_outcome_on_an_image_is_the_same_in_any_batch(learned, attack):
    # torchattacks draws random starts for the whole batch (batched, its own Square and APGD
    # give an image another adversarial image than alone); with each image's draws its own,
    # an image attacked among 48, among a few, or alone comes out the same.
    from lie_ray.attacks.library import PipelineModule, autoattack, square

    defenders, batch = learned
    plain = defenders["Plain"]
    module = PipelineModule(plain.model, plain.model)
    eps = 8 / 255
    build = {
        "square": lambda: square(module, eps, 40, seed=5),
        "autoattack": lambda: autoattack(module, eps, "light", 3, 40, seed=5),
    }[attack]

    def make():  # AutoAttack also says which of its parts broke each image: images only here
        run = build()
        return lambda *args: (lambda out: out[0] if isinstance(out, tuple) else out)(run(*args))

    images, labels = batch.images[:48], batch.labels[:48]
    together = make()(images, labels)
    with torch.no_grad():
        fooled = (plain.model(together).argmax(1) != labels) & (
            plain.model(images).argmax(1) == labels
        )
    # The rows the library returns moved are those it fooled; compare those and two others.
    rows = [*np.flatnonzero(fooled.numpy())[:5].tolist(), *np.flatnonzero(~fooled.numpy())[:2]]
    assert fooled.sum() >= 3
    among_few = make()(images[rows].contiguous(), labels[rows])
    alone = torch.cat([make()(images[r : r + 1].contiguous(), labels[r : r + 1]) for r in rows])
    torch.testing.assert_close(among_few, together[rows], rtol=0, atol=1e-6)
    # Alone, a batch of one: the deployed verdicts are the same. The images may differ where
    # the network sees the 8-bit image (``PipelineModule``): two iterates that round alike tie
    # in loss, and the last bit of a batch-of-one's logits can break the tie the other way.
    with torch.no_grad():
        verdicts = [
            plain.model(deployed(x, images[rows], eps)).argmax(1) for x in (alone, together[rows])
        ]
    assert torch.equal(*verdicts)
    if attack == "square":  # no loss comparison between iterates: the images themselves
        torch.testing.assert_close(alone, together[rows], rtol=0, atol=1e-6)
    used = make()  # one attack object, called before: its runs are numbered from 0 again
    used(images[rows[2:]].contiguous(), labels[rows[2:]])
    torch.testing.assert_close(
        used(images[rows].contiguous(), labels[rows]), together[rows], rtol=0, atol=1e-6
    )
    moved = (together - images).abs().flatten(1).amax(1)
    assert (moved[fooled] > 0).all() and (moved <= eps + 1e-6).all()


def test_a_library_attack_whose_draws_would_be_shared_is_refused(learned):
    # L2 draws with randn and FAB's restarts draw for a subset of the rows: both would tie an
    # image's outcome to its batch, so they are refused rather than run.
    from lie_ray.attacks.library import FAB, PipelineModule, Square

    plain = learned[0]["Plain"]
    module = PipelineModule(plain.model, plain.model)
    with pytest.raises(ValueError, match="norm='Linf' only"):
        Square(module, norm="L2", eps=0.5)
    with pytest.raises(ValueError, match="n_restarts=1 only"):
        FAB(module, norm="Linf", eps=0.1, n_restarts=2)
