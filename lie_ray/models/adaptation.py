"""Tanaka's adaptation network (ICCE-TW 2018): the layers that let a CNN learn from ciphertext.

The first convolution sees exactly one M x M block per output position (kernel M, stride M),
matching the cipher's block structure, so it can learn to undo the key's per-block shuffle; the
1x1 layers then mix within a block and pixel shuffle restores full resolution with C channels
(Tanaka used C = 32) for whatever classifier follows.
"""

from __future__ import annotations

from torch import nn


def AdaptationNetwork(
    block_size: int = 4, out_channels: int = 32, in_channels: int = 3
) -> nn.Sequential:
    block_features = block_size * block_size * in_channels
    return nn.Sequential(
        nn.BatchNorm2d(in_channels),
        nn.Conv2d(in_channels, block_features, kernel_size=block_size, stride=block_size),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(block_features),
        nn.Conv2d(block_features, block_features, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.BatchNorm2d(block_features),
        nn.Conv2d(block_features, block_size * block_size * out_channels, kernel_size=1),
        nn.PixelShuffle(block_size),
    )
