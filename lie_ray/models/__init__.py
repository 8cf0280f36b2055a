"""Networks: the CIFAR ResNet18 and Tanaka's adaptation network, and the scenario factory."""

from lie_ray.models.adaptation import AdaptationNetwork
from lie_ray.models.factory import build_model
from lie_ray.models.resnet import ResNet18

__all__ = ["AdaptationNetwork", "ResNet18", "build_model"]
