"""Parametric bypass approximation (PBA; Rusu et al., ICML 2022): a keyless attacker who holds
the defended network's weights fits a differentiable stand-in for the keyed transform, then
attacks the network through the stand-in.

The attacker queries the deployed pipeline on images of its own and fits the stand-in so that
``network(stand_in(x))`` predicts what the pipeline predicts (KL divergence to its softmax
outputs), never seeing a key or a ciphertext. The stand-in is one affine map of a block's
pixels, shared by every block: exact for the key-based transforms that act block by block
with one key (Shuffle, NP, and LE up to its nibble split), an approximation for the rest,
which is what the attack's error then measures. No public attack library ships PBA.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


class BlockAffine(torch.nn.Module):
    """One affine map of every ``block`` x ``block`` x 3 block's values, starting as the
    identity (the stand-in an attacker who knows nothing would guess)."""

    def __init__(self, block: int, channels: int = 3):
        super().__init__()
        size = block * block * channels
        self.block = block
        self.linear = torch.nn.Linear(size, size)
        with torch.no_grad():
            self.linear.weight.copy_(torch.eye(size))
            self.linear.bias.zero_()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        n, c, h, w = images.shape
        m = self.block
        blocks = images.reshape(n, c, h // m, m, w // m, m).permute(0, 2, 4, 3, 5, 1)
        mapped = self.linear(blocks.reshape(n, h // m, w // m, m * m * c))
        return (
            mapped.reshape(n, h // m, w // m, m, m, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)
        )


FIT_BATCH = 256  # attacker images per Adam step of the stand-in's fit


def fit_bypass(
    network: torch.nn.Module,
    query: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    block: int,
    steps: int,
    batch_size: int = FIT_BATCH,
    lr: float = 0.01,
    seed: int = 0,
) -> BlockAffine:
    """The stand-in fitted on ``images`` (the attacker's own, float NCHW in [0, 1]) to the
    pipeline's predictions, ``query(x)``: its logits, the only output the attacker sees."""
    generator = torch.Generator().manual_seed(seed)
    stand_in = BlockAffine(block).to(images.device)
    with torch.no_grad():
        targets = torch.cat([F.softmax(query(chunk), 1) for chunk in images.split(256)])
    optimiser = torch.optim.Adam(stand_in.parameters(), lr=lr)
    for _ in range(steps):
        rows = torch.randint(
            0, len(images), (min(batch_size, len(images)),), generator=generator
        ).to(images.device)
        log_probs = F.log_softmax(network(stand_in(images[rows])), 1)
        loss = F.kl_div(log_probs, targets[rows], reduction="batchmean")
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    for parameter in stand_in.parameters():
        parameter.requires_grad_(False)
    return stand_in.eval()
