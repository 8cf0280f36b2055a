"""Networks: the CIFAR ResNet18 and Tanaka's adaptation network."""
from lie_ray.models.resnet import ResNet18

__all__ = ["ResNet18"]
