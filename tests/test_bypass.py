"""The bypass stand-ins (``lie_ray.attacks.bypass``) and the key search from the weights
(``lie_ray.attacks.key_search``), each against an oracle of its own: the key holder's
``with_grad`` (itself checked against literal renderings of the references in
test_transforms), the key arrays the transform was built from, a network that only the true
key makes accurate. Tiny linear networks and random 8-bit images keep the file fast.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lie_ray.attacks.bypass import (
    BlockAffine,
    accuracy,
    agreement,
    fit,
    gradient_cosine,
    stand_in_for,
)
from lie_ray.attacks.key_search import (
    KeyFound,
    attacker_keys,
    key_share,
    search_fields,
    search_key,
)
from lie_ray.keys import Key
from lie_ray.privacy import targets
from lie_ray.transforms import REGISTRY, Transform, TransformSpec, build, from_arrays, registry
from lie_ray.transforms.shuffle import Shuffle

CASES = [(name, variant) for name, cls in REGISTRY.items() for variant in cls.variants]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are tiny: a second intra-op thread only waits on the first, and on a
    busy 2-core machine its spin-wait made this file 7x slower (64 s against 9 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def keyed(name: str, block_size: int, variant: str | None = None) -> Transform:
    """The defender's transform under a fixed master key (a fresh one each run made margins
    vary between runs)."""
    return build(name, Key("master", bytes(range(32)), block_size), block_size, "fixed", variant)


def paper_block_size(name: str) -> int:
    return REGISTRY[name].paper_block_sizes[0]


def random_images(count: int, seed: int) -> torch.Tensor:
    """8-bit images as float NCHW: the values every transform takes exactly."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, 32, 32), generator=generator).float() / 255


def linear_network(seed: int = 0) -> torch.nn.Module:
    """A frozen linear classifier with confident (not near-uniform) predictions."""
    torch.manual_seed(seed)
    network = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    for parameter in network.parameters():
        parameter.requires_grad_(False).mul_(30)
    return network


class ThroughDecryption(torch.nn.Module):
    """``network`` after the TRUE key's decryption (differentiable: Shuffle's inverse is the
    shuffle by argsort, NP is its own inverse): accurate under that key alone."""

    def __init__(self, network: torch.nn.Module, transform: Transform):
        super().__init__()
        self.network = network
        arrays = transform.key_arrays()
        self.decrypt = (
            from_arrays("shuffle", {"perm": np.argsort(arrays["perm"])}, transform.block_size)
            if transform.name == "shuffle"
            else transform
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network(self.decrypt.with_grad(images))


# ---------------------------------------------------------------- representability
@pytest.mark.parametrize("name, variant", CASES)
def test_a_stand_in_set_to_the_key_is_the_transform(name, variant):
    m = paper_block_size(name)
    transform = keyed(name, m, variant)
    stand_in = stand_in_for(TransformSpec(name, m, variant))
    images = random_images(4, seed=1)
    expected = transform.with_grad(images)
    # Unset, it is the attacker's identity-like guess, far from the transform ...
    assert (stand_in(images) - expected).abs().max() > 0.5
    stand_in.set_key(transform)
    # ... set, it is the transform, value for value.
    torch.testing.assert_close(stand_in(images), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name, variant", CASES)
def test_the_key_read_off_a_set_stand_in_is_the_true_key(name, variant):
    m = paper_block_size(name)
    transform = keyed(name, m, variant)
    true = transform.key_arrays()
    spec = TransformSpec(name, m, variant)
    assert key_share(stand_in_for(spec).read_key(), true) < 0.9  # the identity's is not
    read = stand_in_for(spec).set_key(transform).read_key()
    if name == "etc":
        # EtC's rotations and flips overlap (a half turn then a vertical flip is a
        # horizontal flip): the key read may differ in those fields, never in what it does.
        assert all(np.array_equal(read[f], true[f]) for f in ("negaposi", "channel", "shuffle"))
        images = random_images(2, seed=2)
        again = from_arrays(name, read, m, variant)
        torch.testing.assert_close(again.with_grad(images), transform.with_grad(images))
    else:
        assert set(read) == set(true)
        for field in true:
            np.testing.assert_array_equal(read[field], true[field], err_msg=field)
    assert targets.from_arrays(name, read, m).name == name  # the privacy attacks' builder


def test_a_transform_lie_ray_does_not_know_gets_the_shared_block_map(monkeypatch):
    class Plugin(Shuffle):  # a gather transform, one key for every block
        name = "plugin-shuffle"

    monkeypatch.setitem(registry.EXTERNAL, Plugin.name, Plugin)
    transform = Plugin(keyed("shuffle", 2).key_arrays(), 2)
    stand_in = stand_in_for(TransformSpec(Plugin.name, 2))
    assert type(stand_in) is BlockAffine
    assert stand_in.read_key() is None  # no key format to read into
    images = random_images(2, seed=3)
    stand_in.set_key(transform)
    torch.testing.assert_close(stand_in(images), transform.with_grad(images), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- gradients
def test_a_stand_in_set_to_shuffles_key_has_its_true_gradient():
    network, transform = linear_network(), keyed("shuffle", 2)
    images = random_images(16, seed=4)
    labels = torch.arange(16) % 10
    stand_in = stand_in_for(TransformSpec("shuffle", 2))
    identity = gradient_cosine(network, stand_in, transform, images, labels)
    exact = gradient_cosine(network, stand_in.set_key(transform), transform, images, labels)
    # Measured: 1.000 set, 0.006 as the identity.
    assert exact > 0.9999
    assert identity < 0.5


@pytest.mark.parametrize("name", ["le", "ffx"])
def test_piecewise_constant_parts_take_the_key_holders_surrogate(name):
    # LE's nibble split and FFX's lookup have zero gradient; the stand-in's backward is the
    # key holder's default BPDA (bpda-both; straight-through), so set to the key it aims
    # exactly as the key holder's attack does.
    m = paper_block_size(name)
    network, transform = linear_network(), keyed(name, m)
    images, labels = random_images(8, seed=5), torch.arange(8)
    stand_in = stand_in_for(TransformSpec(name, m)).set_key(transform)
    assert gradient_cosine(network, stand_in, transform, images, labels) > 0.9999


# ---------------------------------------------------------------- fitting
@pytest.mark.parametrize("name", ["shuffle", "np"])
def test_fitting_to_the_pipelines_outputs_makes_it_predict_what_the_pipeline_predicts(name):
    network, transform = linear_network(), keyed(name, 2)
    own, held_out = random_images(512, seed=6), random_images(256, seed=7)
    with torch.no_grad():
        probabilities = F.softmax(network(transform.with_grad(own)), 1)
        predicted = network(transform.with_grad(held_out)).argmax(1)
    spec = TransformSpec(name, 2)
    before = agreement(network, stand_in_for(spec), held_out, predicted)
    fitted = fit(network, stand_in_for(spec), own, probabilities, 200, batch_size=128, seed=0)
    # Measured on held-out images: Shuffle 0.20 -> 0.98, NP 0.27 -> 0.90 (300 steps of 256:
    # 0.99 and 0.96).
    assert agreement(network, fitted, held_out, predicted) >= before + 0.5
    assert not any(p.requires_grad for p in fitted.parameters()) and not fitted.training
    assert all(p.grad is None for p in network.parameters())  # the network stayed frozen


def test_fitting_to_labels_alone_and_determinism():
    network, transform = linear_network(), keyed("np", 2)
    own, held_out = random_images(512, seed=8), random_images(256, seed=9)
    with torch.no_grad():
        labels = network(transform.with_grad(own)).argmax(1)
        held_out_labels = network(transform.with_grad(held_out)).argmax(1)
    spec = TransformSpec("np", 2)
    before = accuracy(network, stand_in_for(spec), held_out, held_out_labels)
    fitted = fit(network, stand_in_for(spec), own, labels, 200, batch_size=128, seed=0)
    # Measured: 0.24 -> 0.80 from the labels alone.
    assert accuracy(network, fitted, held_out, held_out_labels) >= before + 0.4
    first, second = (fit(network, stand_in_for(spec), own, labels, 5, seed=3) for _ in range(2))
    assert torch.equal(first.weight, second.weight)
    assert not torch.equal(first.weight, fit(network, stand_in_for(spec), own, labels, 5).weight)


# ---------------------------------------------------------------- key search
@pytest.mark.parametrize("name, budget", [("shuffle", 1000), ("np", 200)])
def test_the_key_search_finds_the_key_the_network_was_trained_for(name, budget):
    network, transform = linear_network(), keyed(name, 2)
    images = random_images(64, seed=10)
    with torch.no_grad():
        labels = network(images).argmax(1)  # the plain images' classes: only the key's
    defended = ThroughDecryption(network, transform)
    found = search_key(defended, TransformSpec(name, 2), images, labels, budget, seed=1)
    true = transform.key_arrays()
    # Measured: the true key in 206 (Shuffle) and 32 (NP) evaluations; random keys share
    # 0 to 0.25 of Shuffle's entries, 0.17 to 0.5 of NP's.
    assert isinstance(found, KeyFound) and found.started_from == "random"
    assert key_share(found, true) == 1.0 and found.accuracy == 1.0
    assert found.evaluations <= budget
    assert found.transform.fingerprint == transform.fingerprint
    random_shares = [key_share(k, true) for k in attacker_keys(TransformSpec(name, 2), 5, 4)]
    assert max(random_shares) <= 0.6


def test_the_key_search_starts_from_a_stand_ins_key_and_stops_within_its_budget():
    network, transform = linear_network(), keyed("shuffle", 2)
    images = random_images(32, seed=11)
    with torch.no_grad():
        labels = network(images).argmax(1)
    defended = ThroughDecryption(network, transform)
    spec = TransformSpec("shuffle", 2)
    start = stand_in_for(spec).set_key(transform).read_key()
    found = search_key(defended, spec, images, labels, budget=40, seed=2, start=start)
    assert found.started_from == "stand-in" and key_share(found, transform.key_arrays()) == 1.0
    assert found.evaluations == 40  # the start, the random keys, then moves that all fail
    short = search_key(defended, spec, images, labels, budget=3, seed=2)
    assert short.evaluations == 3 and key_share(short, transform.key_arrays()) < 1.0


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_local_move_keeps_a_key_the_transform_takes(name):
    m = paper_block_size(name)
    keys = attacker_keys(TransformSpec(name, m), seed=3, count=2)
    fields = {field.name: field for field in search_fields(keys)}
    assert set(fields) == set(REGISTRY[name](keys[0], m).key_arrays())  # every field searched
    rng = np.random.default_rng(0)
    for field in fields.values():
        for move in rng.integers(0, field.count, 3):
            moved = {**keys[0], field.name: field.apply(keys[0][field.name], int(move))}
            assert key_share(moved, keys[0]) < 1.0
            from_arrays(name, moved, m)  # refused (LieRayError) if the move broke the format


def test_key_share_counts_equal_entries_over_the_fields_both_hold():
    true = {"perm": np.array([0, 1, 2, 3]), "flip": np.array([True, False])}
    assert key_share({"perm": np.array([1, 0, 2, 3]), "other": np.zeros(3)}, true) == 0.5
    assert key_share({"perm": np.array([1, 0, 2, 3]), "flip": np.array([1, 0])}, true) == 4 / 6
    assert key_share(true, true) == 1.0


def test_a_fit_carried_on_is_the_longer_fit_and_its_branch_leaves_it_be():
    """``Fitting``: 3 steps and then 4 more are a fresh fit's 7, bit for bit (PBA's 2x run
    carries its 1x fit on instead of fitting again); carrying a branch on leaves the fit it
    came from at its 3 steps; going back, or on other images, is refused."""
    from lie_ray.attacks.bypass import Fitting

    network, transform = linear_network(), keyed("np", 2)
    own = random_images(96, seed=10)
    with torch.no_grad():
        probabilities = F.softmax(network(transform.with_grad(own)), 1)
    spec = TransformSpec("np", 2)
    short = Fitting(stand_in_for(spec), probabilities, seed=4, batch_size=32)
    short.advance(network, own, 3)
    before = short.stand_in.weight.clone()
    carried = short.branch().advance(network, own, 7)
    fresh = fit(network, stand_in_for(spec), own, probabilities, 7, batch_size=32, seed=4)
    assert torch.equal(carried.stand_in.weight, fresh.weight)
    assert torch.equal(short.stand_in.weight, before)
    assert not torch.equal(before, fresh.weight)  # the 4 steps moved it
    three = fit(network, stand_in_for(spec), own, probabilities, 3, batch_size=32, seed=4)
    assert torch.equal(before, three.weight)
    with pytest.raises(ValueError, match="cannot go on"):
        carried.advance(network, own, 5)
    with pytest.raises(ValueError, match="cannot go on"):
        short.advance(network, own[:64], 6)
