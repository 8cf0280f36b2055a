"""Parametric bypass approximation (PBA; Rusu et al., ICML 2022): a keyless attacker who holds
the defended network's weights fits a differentiable stand-in for the keyed transform, then
attacks the network through the stand-in.

The attacker queries the deployed pipeline on images of its own and fits the stand-in so that
``network(stand_in(x))`` predicts what the pipeline predicts (KL divergence to its output
probabilities, or cross-entropy to labels when that is all it has), never seeing a key or a
ciphertext.

A stand-in is only as good as what it can express: an affine map of a block's byte values
cannot express LE, which is affine in each byte's NIBBLES. So each transform gets a stand-in of
its own structure with the key relaxed to continuous parameters, chosen so that some setting
of them IS the transform (``set_key`` sets it; the tests prove the equality for every member
of the family):

===========  ==============================================================================
LE           one affine map of a block's 2d nibbles (public split, secret routing), shared
ELE          an affine nibble map per block, then a relaxed (Sinkhorn) block permutation
Shuffle, NP  one affine map of a block's d values, shared by every block
PE           an affine 3 x 3 colour map (with offset) per pixel
EtC          an affine d x d map per block, then a relaxed block permutation
FFX          per block position, a mix of the value and a learned 256-entry lookup
other        Shuffle's shared block map: the old stand-in, for transforms lie_ray does not know
===========  ==============================================================================

Piecewise-constant parts (the nibble split, the lookup) get the surrogate backward lie_ray
gives the key holder (``transforms.nibble.bpda``'s ``bpda-both``; straight-through for the
lookup), so a stand-in set to the true key has the key holder's gradient. ``read_key`` rounds
a fitted stand-in back to a discrete key in the transform's own format: the start of the key
search (``attacks.key_search``). No public attack library ships PBA.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from lie_ray.errors import LieRayError
from lie_ray.transforms import Transform, TransformSpec, from_arrays, transform_class
from lie_ray.transforms.base import CHANNELS, GatherTransform
from lie_ray.transforms.ffx import LOOKUP_SIZE
from lie_ray.transforms.nibble.tables import block_element_offsets
from lie_ray.transforms.pe import COLOUR_TABLE

# Attacker images per Adam step of the stand-in's fit: a step through the study's width-8
# network took 0.22 s at 128 images and 0.40 s at 256 on one thread here.
FIT_BATCH = 128
# Adam's step on parameters of order one (signed routes, lookup values, Sinkhorn logits).
# Measured (300 steps, 512 CIFAR images, a linear network; held-out agreement with the
# pipeline): 0.01 fitted Shuffle/NP/PE/FFX at M=4 to 0.68/0.72/0.69/0.94, 0.03 to
# 0.72/0.72/0.73/0.98; 0.003 left Shuffle/NP at M=2 at 0.61/0.43 where 0.03 reached 0.99/0.95.
FIT_LR = 0.03
SINKHORN_ITERATIONS = 20
# A Sinkhorn logit this far above the rest makes a row one-hot to e**-30: exact in float32.
SHARP = 30.0

KeyArrays = dict[str, np.ndarray]


# ---------------------------------------------------------------- block layout
def to_blocks(images: torch.Tensor, m: int) -> torch.Tensor:
    """NCHW -> (N, blocks, d): row-major blocks, elements in (row, col, channel) order, as
    every block transform of the family numbers them (TRANSFORMS.md)."""
    n, c, h, w = images.shape
    blocks = images.reshape(n, c, h // m, m, w // m, m).permute(0, 2, 4, 3, 5, 1)
    return blocks.reshape(n, (h // m) * (w // m), m * m * c)


def from_blocks(blocks: torch.Tensor, m: int, image_size: tuple[int, int]) -> torch.Tensor:
    h, w = image_size
    n = blocks.shape[0]
    image = blocks.reshape(n, h // m, w // m, m, m, CHANNELS).permute(0, 5, 1, 3, 2, 4)
    return image.reshape(n, CHANNELS, h, w)


def block_linear(blocks: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``weight[g] @ block + bias[g]`` for every block: g = 0 for a map shared by every block
    (one GEMM), g = the block's own index for a map per block."""
    if len(weight) == 1:
        return F.linear(blocks, weight[0], bias[0])
    return torch.einsum("gij,ngj->ngi", weight, blocks) + bias


def assignment(score: np.ndarray) -> np.ndarray:
    """The permutation p maximising sum_i score[i, p[i]]: the discrete key nearest a relaxed
    map (``linear_sum_assignment``, exact where a greedy row-by-row argmax may repeat)."""
    return linear_sum_assignment(score, maximize=True)[1].astype(np.int64)


def block_gather(transform: GatherTransform, m: int) -> tuple[np.ndarray, ...]:
    """A gather transform as blocks: for output block i and element e, the input block
    (``source_block[i]``), element (``source_element[i, e]``) and negation it reads.

    Read off the transform's own gather tables, so one routine sets every gather transform's
    stand-in; a transform that mixes blocks (not block-local at block size ``m``) is refused.
    """
    h, w = transform.image_size
    source, negated = transform.tables("encrypt", "hwc")
    offsets = block_element_offsets(h, w, CHANNELS, m, "hwc")
    block_of, element_of = np.empty(source.size, np.int64), np.empty(source.size, np.int64)
    block_of[offsets] = np.arange(len(offsets))[:, None]
    element_of[offsets] = np.arange(offsets.shape[1])[None, :]
    read = source[offsets]
    if not (block_of[read] == block_of[read][:, :1]).all():
        raise LieRayError(
            f"{transform.name} mixes values of different {m}x{m} blocks: no block stand-in "
            "represents it at this block size"
        )
    return block_of[read][:, 0], element_of[read], negated[offsets]


@contextmanager
def frozen(network: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The network in eval mode with no gradient to its parameters (the attacker fits the
    stand-in, never the network), restored afterwards."""
    flags = [p.requires_grad for p in network.parameters()]
    training = network.training
    network.eval().requires_grad_(False)
    try:
        yield network
    finally:
        for parameter, flag in zip(network.parameters(), flags):
            parameter.requires_grad_(flag)
        network.train(training)


# ---------------------------------------------------------------- the stand-ins
class StandIn(torch.nn.Module):
    """A differentiable model of a keyed transform: ``forward`` maps plain float NCHW images
    in [0, 1] to what the network takes (as ``transform.with_grad`` does), ``set_key`` sets it
    to a real key (to prove it can represent the transform; no attack calls it), ``read_key``
    rounds its parameters to a discrete key in the transform's format (None where none can be
    read)."""

    def __init__(self, name: str, block_size: int, variant: str, image_size: tuple[int, int]):
        super().__init__()
        self.name, self.block_size, self.variant = name, block_size, variant
        self.image_size = tuple(image_size)
        self.blocks = (self.image_size[0] // block_size) * (self.image_size[1] // block_size)
        self.size = block_size * block_size * CHANNELS

    def set_key(self, transform: Transform) -> StandIn:
        raise LieRayError(
            f"no key format is known for transform {transform.name!r}: its stand-in can be "
            "fitted, not set"
        )

    def read_key(self) -> KeyArrays | None:
        return None

    def check(self, transform: Transform) -> None:
        if (transform.name, transform.block_size, tuple(transform.image_size)) != (
            self.name,
            self.block_size,
            self.image_size,
        ):
            raise LieRayError(
                f"a stand-in for {self.name} at block size {self.block_size} cannot take the "
                f"key of {transform.name} at block size {transform.block_size}"
            )


class BlockShuffle(torch.nn.Module):
    """A relaxed block permutation: output block i = sum_j P[i, j] input block j, with P the
    Sinkhorn normalisation of learned logits (doubly stochastic, so it can only blur blocks,
    not scale them). Starts near the identity; a one-hot logit row makes it exact."""

    def __init__(self, blocks: int):
        super().__init__()
        # Diagonal weight ~0.88: identity-like, yet soft enough for gradients to move it.
        self.logits = torch.nn.Parameter(torch.eye(blocks) * (np.log(blocks) + 2))

    def matrix(self) -> torch.Tensor:
        log_p = self.logits
        for _ in range(SINKHORN_ITERATIONS):
            log_p = log_p - log_p.logsumexp(1, keepdim=True)
            log_p = log_p - log_p.logsumexp(0, keepdim=True)
        return log_p.exp()

    def forward(self, blocks: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,njd->nid", self.matrix(), blocks)

    def set(self, block_perm: np.ndarray) -> None:
        with torch.no_grad():
            self.logits.zero_()
            rows = torch.arange(len(block_perm), device=self.logits.device)
            self.logits[rows, torch.from_numpy(block_perm).to(rows.device)] = SHARP

    def read(self) -> np.ndarray:
        return assignment(self.matrix().detach().cpu().numpy())


class BlockAffine(StandIn):
    """An affine map of a block's d values: one shared by every block (``per_block`` False:
    Shuffle, NP, and the fallback for transforms lie_ray does not know), or one per block, then
    optionally a relaxed block permutation (PE's pixels, EtC). Starts as the identity, the
    stand-in an attacker who knows nothing would guess. Affine, so its gradient is the true one.
    """

    per_block = False
    shuffled = False

    def __init__(self, name: str, block_size: int, variant: str, image_size: tuple[int, int]):
        super().__init__(name, block_size, variant, image_size)
        groups = self.blocks if self.per_block else 1
        self.weight = torch.nn.Parameter(torch.eye(self.size).repeat(groups, 1, 1))
        self.bias = torch.nn.Parameter(torch.zeros(groups, self.size))
        self.shuffle = BlockShuffle(self.blocks) if self.shuffled else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        mapped = block_linear(to_blocks(images, self.block_size), self.weight, self.bias)
        if self.shuffle is not None:
            mapped = self.shuffle(mapped)
        return from_blocks(mapped, self.block_size, self.image_size)

    def set_key(self, transform: Transform) -> StandIn:
        """Any gather transform (every key of Shuffle, NP, PE, EtC) whose moves fit this
        structure, read off its gather tables."""
        if not isinstance(transform, GatherTransform):
            return super().set_key(transform)
        self.check(transform)
        source_block, element, negated = block_gather(transform, self.block_size)
        if self.shuffle is not None:
            self.shuffle.set(source_block)
        elif not np.array_equal(source_block, np.arange(self.blocks)):
            raise LieRayError(f"{transform.name} moves blocks: this stand-in keeps them in place")
        if self.per_block:  # output block i is input block source_block[i]'s map
            group = source_block
        elif (element == element[0]).all() and (negated == negated[0]).all():
            group, element, negated = np.zeros(1, np.int64), element[:1], negated[:1]
        else:
            raise LieRayError(f"{transform.name} acts differently per block: no shared map")
        weight = np.zeros((len(group), self.size, self.size), np.float32)
        rows = np.arange(self.size)[None, :]
        weight[np.arange(len(group))[:, None], rows, element] = 1 - 2 * negated.astype(np.float32)
        index = torch.from_numpy(group).to(self.weight.device)
        with torch.no_grad():
            self.weight[index] = torch.from_numpy(weight).to(self.weight)
            self.bias[index] = torch.from_numpy(negated.astype(np.float32)).to(self.bias)
        return self

    def maps(self) -> np.ndarray:
        return self.weight.detach().cpu().numpy()


class ShuffleStandIn(BlockAffine):
    def read_key(self) -> KeyArrays:
        """The permutation the shared map is nearest to (out[j] = block[perm[j]])."""
        return {"perm": assignment(self.maps()[0])}


class NPStandIn(BlockAffine):
    def read_key(self) -> KeyArrays:
        """Flipped where the shared map's diagonal is negative (1 - v has slope -1)."""
        return {"flip": np.diag(self.maps()[0]) < 0}


class PEStandIn(BlockAffine):
    per_block = True  # PE's "blocks" are single pixels: a 3 x 3 colour map each

    def read_key(self) -> KeyArrays:
        """Per pixel the colour code whose channel routes carry the most weight, and the
        negative-positive flags from the signs along those routes."""
        maps = self.maps()
        routes = maps[:, np.arange(CHANNELS)[None, :], COLOUR_TABLE]  # (pixels, 6, 3)
        colour = np.abs(routes).sum(2).argmax(1)
        chosen = routes[np.arange(len(maps)), colour]  # sign of out c = in T[code][c]
        inv = np.empty_like(chosen, dtype=np.int64)
        np.put_along_axis(inv, COLOUR_TABLE[colour], (chosen > 0).astype(np.int64), axis=1)
        return {"inv": inv.reshape(-1), "colour": colour.astype(np.int64)}


class EtCStandIn(BlockAffine):
    per_block, shuffled = True, True

    def read_key(self) -> KeyArrays:
        """Per block the one of EtC's 144 block operations (rotation x negative-positive x
        flip x colour) whose signed routes the block's map weighs most, and the block
        permutation. Some operations coincide (a half turn then a vertical flip is a
        horizontal flip): the key read is then an equivalent one, not always the same arrays.
        """
        combos = np.array(list(itertools.product(range(4), range(2), range(3), range(6))))
        m = self.block_size
        arrays = dict(zip(("rotate", "negaposi", "reverse", "channel"), combos.T))
        template = from_arrays(
            "etc", {**arrays, "shuffle": np.arange(len(combos))}, m, self.variant, (m, m * 144)
        )
        _, element, negated = block_gather(template, m)
        maps = self.maps()
        routes = maps[:, np.arange(self.size)[None, :], element]  # (blocks, 144, d)
        best = (routes * (1 - 2 * negated.astype(np.float32))).sum(2).argmax(1)
        return {**{k: v[best] for k, v in arrays.items()}, "shuffle": self.shuffle.read()}


class NibbleAffine(StandIn):
    """LE's structure: each byte splits into its nibbles (public), an affine map of a block's
    2d nibbles gives 2d output nibbles (the secret routing and reversal, relaxed), and they
    re-join into d bytes. One map for every block (LE), or one per block and then a relaxed
    block permutation (ELE). Starts as the identity routing.

    The split is piecewise constant: its backward is ``bpda-both``'s (the high nibble moves at
    255/16 per unit of the pixel, the low one at 255), so a stand-in set to the true key has
    exactly the key holder's default gradient.
    """

    per_block = False

    def __init__(self, name: str, block_size: int, variant: str, image_size: tuple[int, int]):
        super().__init__(name, block_size, variant, image_size)
        groups, nibbles = (self.blocks if self.per_block else 1), 2 * self.size
        self.routes = torch.nn.Parameter(torch.eye(nibbles).repeat(groups, 1, 1))
        self.offsets = torch.nn.Parameter(torch.zeros(groups, nibbles))
        self.shuffle = BlockShuffle(self.blocks) if self.per_block else None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blocks = to_blocks(images, self.block_size)
        levels = torch.floor(blocks.detach().clamp(0, 1) * 255 + 0.5)  # as transforms.quantise
        high = torch.floor(levels / 16)
        moved = blocks - blocks.detach()  # zero forward, the pixel's own slope backward
        nibbles = torch.cat([levels - 16 * high + 255 * moved, high + 255 / 16 * moved], -1)
        out = block_linear(nibbles, self.routes, self.offsets)
        joined = (16 * out[..., self.size :] + out[..., : self.size]) / 255
        if self.shuffle is not None:
            joined = self.shuffle(joined)
        return from_blocks(joined, self.block_size, self.image_size)

    def set_routes(self, perms: np.ndarray) -> None:
        """PAPER.md's routing per key row: z[i] = y[perm[i]], reversed (15 - v) where position
        i and its source differ in the reversal set {i : perm[i] > d}."""
        reversed_mask = perms > self.size
        flip = reversed_mask != np.take_along_axis(reversed_mask, perms, axis=1)
        routes = np.zeros((len(perms), 2 * self.size, 2 * self.size), np.float32)
        rows = np.arange(2 * self.size)[None, :]
        routes[np.arange(len(perms))[:, None], rows, perms] = 1 - 2 * flip
        with torch.no_grad():
            self.routes.copy_(torch.from_numpy(routes))
            self.offsets.copy_(torch.from_numpy(15 * flip.astype(np.float32)))

    def read_routes(self) -> np.ndarray:
        """Each map's nearest nibble permutation, by the weight of its routes either sign."""
        return np.stack([assignment(np.abs(r)) for r in self.routes.detach().cpu().numpy()])


class LEStandIn(NibbleAffine):
    def set_key(self, transform: Transform) -> StandIn:
        self.check(transform)
        self.set_routes(transform.key_arrays()["perm"][None, :])
        return self

    def read_key(self) -> KeyArrays:
        return {"perm": self.read_routes()[0]}


class ELEStandIn(NibbleAffine):
    per_block = True

    def set_key(self, transform: Transform) -> StandIn:
        """ELE keys block j's nibbles by ``perms[j]`` in place, then output block i is block
        ``block_perm[i]``: the maps are indexed by input block, as this stand-in applies them."""
        self.check(transform)
        arrays = transform.key_arrays()
        self.set_routes(arrays["perms"])
        self.shuffle.set(arrays["block_perm"])
        return self

    def read_key(self) -> KeyArrays:
        return {"perms": self.read_routes(), "block_perm": self.shuffle.read()}


class FFXStandIn(StandIn):
    """FFX's structure: at every block position j, ``value_weight[j]`` times the (quantised)
    value plus ``lookup_weight[j]`` times a learned 256-entry table at the value's 8-bit
    level. The true key: weight 1 on the lookup at the key's positions, on the value elsewhere
    (255 / peak there in the ``reference`` variant, which divides everything by the peak).
    Starts as the identity (no lookup, the table the identity's). The quantisation and the
    lookup are straight-through backward, the key holder's BPDA for FFX."""

    def __init__(self, name: str, block_size: int, variant: str, image_size: tuple[int, int]):
        super().__init__(name, block_size, variant, image_size)
        self.value_weight = torch.nn.Parameter(torch.ones(self.size))
        self.lookup_weight = torch.nn.Parameter(torch.zeros(self.size))
        self.table = torch.nn.Parameter(torch.arange(LOOKUP_SIZE, dtype=torch.float32) / 255)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        blocks = to_blocks(images, self.block_size)
        rounding = 0.0 if self.variant == "reference" else 0.5  # as FFX quantises
        levels = torch.floor(blocks.detach().clamp(0, 1) * 255 + rounding)
        moved = blocks - blocks.detach()
        value = levels / 255 + moved
        looked_up = self.table[levels.long()] + moved
        out = self.value_weight * value + self.lookup_weight * looked_up
        return from_blocks(out, self.block_size, self.image_size)

    def set_key(self, transform: Transform) -> StandIn:
        self.check(transform)
        flip, lookup = transform.key_arrays()["flip"], transform.key_arrays()["lookup"]
        peak = np.float32(lookup.max())
        kept = 1.0 if self.variant == "paper" else 255 / float(peak)
        with torch.no_grad():
            self.value_weight.copy_(torch.from_numpy(np.where(flip, 0.0, kept)))
            self.lookup_weight.copy_(torch.from_numpy(flip.astype(np.float32)))
            self.table.copy_(torch.from_numpy(lookup.astype(np.float32) / peak))
        return self

    def read_key(self) -> KeyArrays:
        """Positions where the lookup outweighs the value, and 256 distinct codes read off the
        table: it holds lookup / peak up to a scale, so the codes are those of the smallest
        peak that makes it integer (``privacy.recover_ffx``; 999 when none does, a fitted
        table), made distinct in the table's order."""
        from lie_ray.privacy.recover_ffx import smallest_peak

        value, lookup = (w.detach().cpu().numpy() for w in (self.value_weight, self.lookup_weight))
        flip = np.abs(lookup) > np.abs(value)
        table = self.table.detach().cpu().numpy() * (lookup[flip].mean() if flip.any() else 1)
        ratios = (table / max(table.max(), 1e-12)).clip(0, 1).astype(np.float32)
        codes = np.rint(ratios.astype(np.float64) * smallest_peak(ratios)).astype(np.int64)
        return {"flip": flip, "lookup": distinct_codes(codes)}


def distinct_codes(codes: np.ndarray) -> np.ndarray:
    """The nearest strictly increasing codes in the codes' own order, within 0..999: FFX's
    validator needs 256 distinct values, and a fitted table may repeat one."""
    order = np.argsort(codes, kind="stable")
    step = np.arange(len(codes))
    rising = np.maximum.accumulate(codes[order] - step) + step
    out = np.empty_like(codes)
    out[order] = np.minimum(rising, 1000 - len(codes) + step)
    return out


STAND_INS: dict[str, type[StandIn]] = {
    "le": LEStandIn,
    "ele": ELEStandIn,
    "shuffle": ShuffleStandIn,
    "np": NPStandIn,
    "pe": PEStandIn,
    "etc": EtCStandIn,
    "ffx": FFXStandIn,
}


def stand_in_for(spec: TransformSpec, image_size: tuple[int, int] = (32, 32)) -> StandIn:
    """The stand-in for ``spec``'s transform as an attacker who knows nothing would start it
    (the identity, or as near as its structure allows), never from a key. A transform
    lie_ray does not know gets one shared block map."""
    cls = transform_class(spec.name)
    block_size = spec.block_size or cls.paper_block_sizes[0]
    stand_in = STAND_INS.get(spec.name, BlockAffine)
    return stand_in(spec.name, block_size, cls.check_variant(spec.variant), tuple(image_size))


# ---------------------------------------------------------------- fitting and scoring
class Fitting:
    """A stand-in's fit in progress: the stand-in, Adam's state, the targets and where the
    minibatch draws stand, so that a fit is carried further (``advance``) or branched
    (``branch``) instead of started again. Adam at a constant rate on minibatches drawn from
    one seeded generator: n steps and then m more are the n + m steps of a fresh fit, bit for
    bit (tests/test_bypass.py), so PBA's 2x run carries its 1x fit on and pays only for the
    steps it adds. ``schedule_steps`` anneals the rate on a cosine over that many steps
    instead (``bench/bypass_curve.py`` reads one fit at checkpoints)."""

    def __init__(
        self,
        stand_in: StandIn,
        targets: torch.Tensor,
        lr: float = FIT_LR,
        seed: int = 0,
        batch_size: int = FIT_BATCH,
        schedule_steps: int | None = None,
    ):
        self.stand_in = stand_in.requires_grad_(True)
        self.targets = targets
        self.batch_size = batch_size
        self.optimiser = torch.optim.Adam(stand_in.parameters(), lr=lr)
        self.schedule = (
            None
            if schedule_steps is None
            else torch.optim.lr_scheduler.CosineAnnealingLR(self.optimiser, schedule_steps)
        )
        self.draws = torch.Generator().manual_seed(seed).get_state()
        self.steps = 0
        self.images = None  # how many images it fits on, fixed by its first step
        self.loss = float("nan")  # the last step's

    def advance(self, network: torch.nn.Module, images: torch.Tensor, steps: int) -> Fitting:
        """Fit on until ``steps`` steps in all, on the same ``images`` (float NCHW in [0, 1],
        the attacker's own) as before; the stand-in is left in eval mode, frozen."""
        if steps < self.steps or self.images not in (None, len(images)):
            raise ValueError(
                f"a fit of {self.steps} steps on {self.images} images cannot go on to "
                f"{steps} steps on {len(images)}"
            )
        self.images = len(images)
        generator = torch.Generator().set_state(self.draws)
        targets = self.targets.to(images.device)
        batch = (min(self.batch_size, len(images)),)
        self.stand_in.train().requires_grad_(True)
        loss = None
        with frozen(network):
            for _ in range(self.steps, steps):
                rows = torch.randint(0, len(images), batch, generator=generator).to(images.device)
                loss = fit_loss(network(self.stand_in(images[rows])), targets[rows])
                self.optimiser.zero_grad(set_to_none=True)
                loss.backward()
                self.optimiser.step()
                if self.schedule is not None:
                    self.schedule.step()
        self.steps, self.draws = steps, generator.get_state()
        if loss is not None:
            self.loss = loss.item()
        self.stand_in.requires_grad_(False).eval()
        return self

    def branch(self) -> Fitting:
        """An independent copy to carry on, leaving this fit (and its stand-in) as it is."""
        return copy.deepcopy(self)


def fit(
    network: torch.nn.Module,
    stand_in: StandIn,
    images: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    batch_size: int = FIT_BATCH,
    lr: float = FIT_LR,
    seed: int = 0,
) -> StandIn:
    """``stand_in`` fitted on ``images`` (the attacker's own, float NCHW in [0, 1]) so that
    the frozen network through it predicts ``targets``: the pipeline's output probabilities
    (n, classes), fitted by KL divergence, or labels (n,), fitted by cross-entropy (an
    attacker that sees only labels). Adam on random minibatches drawn from ``seed``; returns
    the stand-in in eval mode with its parameters frozen (``Fitting`` to carry it on)."""
    fitting = Fitting(stand_in.to(images.device), targets, lr, seed, batch_size)
    return fitting.advance(network, images, steps).stand_in


def fit_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if targets.is_floating_point():
        return F.kl_div(F.log_softmax(logits, 1), targets, reduction="batchmean")
    return F.cross_entropy(logits, targets)


def predictions(network: torch.nn.Module, stand_in: StandIn, images: torch.Tensor) -> torch.Tensor:
    with frozen(network), torch.no_grad():
        return torch.cat([network(stand_in(chunk)).argmax(1) for chunk in images.split(1024)])


def agreement(
    network: torch.nn.Module, stand_in: StandIn, images: torch.Tensor, predicted: torch.Tensor
) -> float:
    """Top-1 agreement of network(stand_in(x)) with the pipeline's ``predicted`` classes (or
    its logits or probabilities, (n, classes)) on the same images."""
    classes = predicted.argmax(1) if predicted.ndim == 2 else predicted
    ours = predictions(network, stand_in, images)
    return (ours == classes.to(ours.device)).float().mean().item()


def accuracy(
    network: torch.nn.Module, stand_in: StandIn, images: torch.Tensor, labels: torch.Tensor
) -> float:
    return agreement(network, stand_in, images, labels)


def gradient_cosine(
    network: torch.nn.Module,
    stand_in: StandIn,
    transform: Transform,
    images: torch.Tensor,
    labels: torch.Tensor,
    backward: str | None = None,
) -> float:
    """Mean over images of the cosine between the input gradients of the cross-entropy
    through the stand-in and through the key holder's ``transform.with_grad`` (its true
    gradient, or its default BPDA surrogate): how well an attack through the stand-in aims."""

    def gradient(forward) -> torch.Tensor:
        plain = images.detach().clone().requires_grad_(True)
        loss = F.cross_entropy(network(forward(plain)), labels, reduction="sum")
        return torch.autograd.grad(loss, plain)[0].flatten(1)

    with frozen(network):
        ours = gradient(stand_in)
        theirs = gradient(lambda x: transform.with_grad(x, backward))
    return F.cosine_similarity(ours, theirs, dim=1).mean().item()
