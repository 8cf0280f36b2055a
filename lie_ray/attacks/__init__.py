"""Attacks on the plain image, through whatever classifier (and cipher) sits behind it.

PGD and FGSM are ours (small, and the paper's exact step rule); AutoAttack and the Square
attack come from torchattacks (``lie_ray.attacks.library``)."""

from lie_ray.attacks.base import Attack, Classifier
from lie_ray.attacks.fgsm import FGSM
from lie_ray.attacks.pgd import PGD

__all__ = ["Attack", "Classifier", "FGSM", "PGD"]
