"""An attack written outside lie_ray: PGD through the defender's transform keyed with a key of
the attacker's own, the "wrong key" attacker of AprilPyone & Kiya (TIFS 2021).

A keyless attacker knows the network's weights and the transform (its name, block size and
variant), not the key: it guesses one and follows the gradient through its guess. lie_ray hands
the attack a keyless view (``lie_ray.attacks.Keyless``), which holds no key, and scores the
adversarial images it makes on the deployed pipeline (``through``: 8-bit, within eps).

Installed, it runs wherever it is named: ``lie-ray evaluate --attacks default,wrong-key`` or
``lie_ray.evaluate(..., attacks=["wrong-key"])``, counted in the keyless worst case.
"""

from lie_ray.attacks import AttackSpec, pgd_cost, through
from lie_ray.keys import Key
from lie_ray.transforms import build


def wrong_key(view, batch, eps, settings):
    """PGD (``settings``' steps and restarts) through the transform under the attacker's key,
    with the transform's own backward (its gradient, or its BPDA surrogate), scored on the
    deployed pipeline (``through``: 8-bit, within eps)."""
    spec = view.transform
    guess = Key("master", (settings.attacker_seed + 1).to_bytes(32, "little"), spec.block_size)
    cipher = build(spec.name, guess, spec.block_size, "wrong-key", spec.variant)
    guessed = lambda plain: view.network(cipher.with_grad(plain, None))  # noqa: E731
    return through(guessed, view, batch, eps, settings)


SPEC = AttackSpec(
    name="wrong-key",
    tier="keyless",
    run=wrong_key,
    cost=pgd_cost,  # one PGD with every restart: what it runs
    needs=frozenset({"transform"}),
    cascade_rank=35,  # after PBA, before EOT: one PGD run, like them
    label="wrong-key",
    colour="crimson",
    description="PGD through the transform under a key of the attacker's own",
)
