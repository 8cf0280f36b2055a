"""LE's nibble kernels: Tanaka's block-wise cipher exact and vectorised, and its BPDA backward.

``tables`` (whole-image gather plans), ``kernels_numpy`` and ``kernels_torch`` (the gathers),
``block`` (``NibbleCipher``: tables applied to arrays and tensors; ``BlockCipher``: one key for
every block), ``bpda`` (the cipher inside autograd), ``reference`` (the yardstick). LE and ELE
(``transforms.le``, ``transforms.ele``) run on these. The autograd exports load torch on first
use, so NumPy-only users (Ray Data actors) never pay for importing it.
"""

from lie_ray.transforms.nibble.block import (
    BlockCipher,
    NibbleCipher,
    from_permutation,
    nibble_count,
    validate_permutation,
)

_TORCH_EXPORTS = {"BACKWARD_MODES", "cipher_with_grad", "smooth_surrogate"}

__all__ = [
    "BlockCipher",
    "NibbleCipher",
    "from_permutation",
    "nibble_count",
    "validate_permutation",
    *sorted(_TORCH_EXPORTS),
]


def __getattr__(name: str):
    if name in _TORCH_EXPORTS:
        from lie_ray.transforms.nibble import bpda

        return getattr(bpda, name)
    raise AttributeError(f"module 'lie_ray.transforms.nibble' has no attribute {name!r}")
