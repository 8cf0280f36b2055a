"""How private is it? Attacks on the transforms' secrecy, one small module each.

``known_plaintext`` (exact key recovery from image pairs), ``chosen_plaintext`` (crafted
probes), ``ciphertext_only`` (FR-basic), ``itn`` (learned inversion, a Ray Train job) and
``keyspace`` (key-space audit); ``scoring`` (SSIM/PSNR from torchmetrics); ``suite`` (every
exact attack on one transform), ``run`` (the ``lie-ray privacy`` job) and ``api``
(``lie_ray.privacy.attack``, imported on first use so the attack modules stay light).

    from lie_ray import privacy
    found = privacy.attack("shuffle", images, attacker_images=own)
    found.results.to_pandas()      # the columns of privacy.parquet
"""

__all__ = ["Privacy", "attack"]


def __getattr__(name: str):
    if name in __all__:
        from lie_ray.privacy import api

        return getattr(api, name)
    raise AttributeError(f"module 'lie_ray.privacy' has no attribute {name!r}")
