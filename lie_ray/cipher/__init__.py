"""Compatibility name for LE's nibble kernels, now ``lie_ray.transforms.nibble`` (README's
``from lie_ray.cipher import from_permutation, cipher_with_grad`` keeps working). Nothing in
the package imports this module: it sits above every layer."""

from lie_ray.transforms.nibble import (
    BlockCipher,
    NibbleCipher,
    from_permutation,
    nibble_count,
    validate_permutation,
)
from lie_ray.transforms.nibble import __all__, __getattr__  # noqa: F401  the lazy torch exports

__all__ = list(__all__)
