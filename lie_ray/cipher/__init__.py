"""Tanaka's learnable block-wise image encryption: exact cipher, autograd views, reference.

The autograd exports load torch on first use, so NumPy-only users (Ray Data actors) never pay
for importing it.
"""
from lie_ray.cipher.block import BlockCipher, from_permutation, nibble_count, validate_permutation

_TORCH_EXPORTS = {"BACKWARD_MODES", "cipher_with_grad", "smooth_surrogate"}

__all__ = ["BlockCipher", "from_permutation", "nibble_count", "validate_permutation",
           *sorted(_TORCH_EXPORTS)]


def __getattr__(name: str):
    if name in _TORCH_EXPORTS:
        from lie_ray.cipher import differentiable

        return getattr(differentiable, name)
    raise AttributeError(f"module 'lie_ray.cipher' has no attribute {name!r}")
