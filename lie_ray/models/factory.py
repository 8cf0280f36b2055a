"""Scenario -> network: plain ResNet18, or the adaptation network in front of one (for
encrypted scenarios whose transform's reference uses one: LE, ELE, EtC; the TIFS defences
and PE train the plain ResNet18 on their ciphertext)."""

from __future__ import annotations

from torch import nn

from lie_ray.models.adaptation import AdaptationNetwork
from lie_ray.models.resnet import ResNet18


def build_model(
    encrypted: bool,
    width: int = 64,
    block_size: int = 4,
    adaptation_channels: int = 32,
    num_classes: int = 10,
    adaptation: bool = True,
) -> nn.Module:
    if not encrypted or not adaptation:
        return ResNet18(num_classes=num_classes, width=width)
    return nn.Sequential(
        AdaptationNetwork(block_size, adaptation_channels),
        ResNet18(num_classes=num_classes, in_channels=adaptation_channels, width=width),
    )
