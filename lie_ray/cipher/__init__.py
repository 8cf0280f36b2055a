"""Tanaka's learnable block-wise image encryption: exact cipher, autograd views, reference."""
from lie_ray.cipher.block import BlockCipher, from_permutation, nibble_count, validate_permutation
from lie_ray.cipher.differentiable import BACKWARD_MODES, cipher_with_grad, smooth_surrogate

__all__ = ["BlockCipher", "from_permutation", "nibble_count", "validate_permutation",
           "BACKWARD_MODES", "cipher_with_grad", "smooth_surrogate"]
