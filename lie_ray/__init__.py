"""lie_ray: does learnable image encryption survive adversarial attack? Measured on Ray.

As a library (``lie_ray.api``): ``lie_ray.evaluate`` (any model behind any transform),
``lie_ray.load`` (a trained scenario as an ``nn.Module``) and ``lie_ray.privacy_attack`` (the
privacy attacks on any transform, also ``lie_ray.privacy.attack``); each is imported on first
use, so that ``import lie_ray.transforms`` (Ray Data's encryption actors) stays free of torch
and Ray.
"""

__version__ = "0.1.0"
__all__ = ["evaluate", "load", "privacy_attack"]


def __getattr__(name: str):
    if name in __all__:
        from lie_ray import api

        return getattr(api, name)
    raise AttributeError(f"module 'lie_ray' has no attribute {name!r}")
