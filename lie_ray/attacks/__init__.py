"""Attacks on the plain image, through whatever classifier (and cipher) sits behind it."""
from lie_ray.attacks.base import Attack, Classifier
from lie_ray.attacks.fgsm import FGSM
from lie_ray.attacks.pgd import PGD
from lie_ray.attacks.square import SquareAttack

__all__ = ["Attack", "Classifier", "FGSM", "PGD", "SquareAttack"]
