"""The key recovered from k leaked (plain, encrypted) pairs of the attacker's own images
(``lie_ray.privacy.known_plaintext``), then PGD through the recovered transform: the robustness
left after k leaked pairs. Only where one key serves every image (the fixed policy) and the
transform's key can be recovered from pairs."""

from __future__ import annotations

from lie_ray.attacks.pgd_through import pgd_cost, through
from lie_ray.attacks.spec import AttackSpec
from lie_ray.privacy import known_plaintext, targets

LEAKED = (1, 2, 4)
COLOURS = ("navy", "teal", "maroon")


def recover(view, settings):
    """Once per scenario: the transform with the key recovered from the view's k pairs
    (whatever is still undetermined after them, as the recovery's best guess)."""
    plain, leaked = view.pairs
    spec = view.transform
    _, arrays = known_plaintext.smallest_k(spec.name, plain, leaked, spec.block_size)
    return targets.from_arrays(spec.name, arrays, spec.block_size)


def recovered_key(view, batch, eps, settings):
    cipher = view.prepared
    return through(
        lambda plain: view.network(cipher.with_grad(plain, None)), view, batch, eps, settings
    )


def same_key(cipher) -> tuple:
    """Where more pairs recover the same key as fewer (one pair often determines it), the
    larger k would attack again with the same key and seeds: the same run."""
    return (__name__, cipher.fingerprint)


SPECS = tuple(
    AttackSpec(
        name=f"recovered-key-{k}",
        tier="leaked",
        leaked_pairs=k,
        run=recovered_key,
        cost=pgd_cost,
        needs=frozenset({"transform", "attacker-images", "recoverable-key"}),
        prepare=recover,
        same_run=same_key,
        # first among the keyless PGD runs of one cost: where one leaked pair reveals the key,
        # it is the white-box attack (on the study's Encrypted it broke 35 of the 40 images it
        # met, transfer 4 of 45), so fewer images are left to the others
        cascade_rank=10 + i,
        label=f"recovered-key-{k}",
        colour=colour,
        description=f"PGD with the key recovered from {k} leaked pair(s)",
    )
    for i, (k, colour) in enumerate(zip(LEAKED, COLOURS))
)
