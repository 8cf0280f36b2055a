"""Compatibility name for LE's nibble kernels, now ``lie_ray.transforms.nibble`` (older
scripts' ``from lie_ray.cipher import from_permutation, cipher_with_grad`` keeps working).
Nothing in the package imports this module: it sits above every layer."""

from lie_ray.transforms.nibble import (  # noqa: F401  the lazy torch exports
    BlockCipher,
    NibbleCipher,
    __all__,
    __getattr__,
    from_permutation,
    nibble_count,
    validate_permutation,
)

__all__ = list(__all__)
