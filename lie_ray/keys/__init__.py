"""Secrets: key files, key derivation, key policies. Nothing here leaves as a secret.

``files``: the key file format, loading and saving (mode 0600); ``derive``: the HKDF-SHA256
stream every sub-key is drawn from; ``policies``: which sub-key encrypts which image.
"""

from lie_ray.keys.derive import hkdf_sha256, le_permutation
from lie_ray.keys.files import (
    FIXED_LABEL,
    IMAGE_SIZE,
    Key,
    check_block_size,
    generate_key,
    import_permutation,
    key_location,
    load_key,
    save_key,
)

__all__ = [
    "FIXED_LABEL",
    "IMAGE_SIZE",
    "Key",
    "check_block_size",
    "generate_key",
    "hkdf_sha256",
    "import_permutation",
    "key_location",
    "le_permutation",
    "load_key",
    "save_key",
]
