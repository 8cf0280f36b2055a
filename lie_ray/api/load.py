"""``lie_ray.load``: a trained scenario as a plain ``nn.Module``, for any attack library.

The module takes PLAIN float NCHW images in [0, 1] and returns logits: the scenario's transform
(with its key, read from the key file) in front of its network, exactly as it was trained. Its
backward pass through the transform is the transform's own (the true gradient, or its default
BPDA surrogate: both nibbles for LE), so torchattacks, ART or AutoAttack run on it as they are
and get the with-key attacker's gradient. Only fixed-key scenarios make such a module: the other
key policies key each image by its id, which a module's ``forward(x)`` never sees.

The key stays out of ``state_dict()`` (it holds the network's weights only); do not pickle the
module itself, which would write the key along with it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lie_ray.errors import LieRayError
from lie_ray.evaluation.defender import load_defender
from lie_ray.evaluation.tables import trained_rows
from lie_ray.transforms import Transform


class DefendedModel(nn.Module):
    """plain image -> transform (keyed) -> network."""

    def __init__(
        self, network: nn.Module, cipher: Transform | None, backward: str | None, scenario: str
    ):
        super().__init__()
        self.network, self.cipher, self.backward, self.scenario = (
            network,
            cipher,
            backward,
            scenario,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.cipher is None:
            return self.network(images)
        return self.network(self.cipher.with_grad(images, self.backward))

    def extra_repr(self) -> str:  # names the key by fingerprint only
        if self.cipher is None:
            return f"scenario={self.scenario}, transform=none"
        return (
            f"scenario={self.scenario}, transform={self.cipher.name}, "
            f"key={self.cipher.fingerprint}, backward={self.backward or 'default'}"
        )


def load(
    run_dir: str | os.PathLike,
    scenario: str,
    key: str | os.PathLike | None = None,
    backward: str | None = None,
) -> DefendedModel:
    """The defender of ``scenario`` trained into ``run_dir`` (a ``lie-ray train`` or sweep
    output), in eval mode with frozen weights. ``key``: the key file it was trained with (by
    default the sweep's own, ``run_dir/keys/master.json``); ``backward``: the transform's
    backward pass for attacks (None: its default)."""
    rows = trained_rows(run_dir, [scenario])
    row = rows[0]
    key_path = None
    if row["encrypted"]:
        key_path = Path(key) if key is not None else Path(run_dir) / "keys" / "master.json"
        if key is None and not key_path.exists():
            raise LieRayError(
                f"{scenario} is encrypted and {key_path} does not exist: pass "
                "key= the key file it was trained with"
            )
    defender = load_defender(row["checkpoint"], None if key_path is None else str(key_path))
    cipher = None
    if defender.encrypted:
        if defender.policy.name != "fixed":
            raise LieRayError(
                f"{scenario} keys each image by its id (policy "
                f"{defender.policy.name}); a module sees no ids, so only fixed-key "
                "scenarios load as one: evaluate the others with lie-ray evaluate"
            )
        cipher = defender.key.transform()
    return DefendedModel(defender.model, cipher, backward, scenario).eval()
