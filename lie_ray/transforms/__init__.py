"""The family of key-based image transforms, behind one interface
(``../shared/docs/TRANSFORMS.md``).

    from lie_ray import transforms
    t = transforms.build("shuffle", load_key("master.json"), block_size=4)  # label "fixed"
    y = t.encrypt(x)                  # uint8 NHWC NumPy or torch NCHW; float32 for ffx
    assert (t.decrypt(y) == x).all()
    t.fingerprint, t.key_space_log2, t.gradient, t.key_arrays()
    transforms.from_arrays("shuffle", {"perm": perm}, block_size=4)
    out = t.with_grad(x_float)        # the attack's forward: true gradient or BPDA
    keyed = TransformSpec("le").keyed(key)
    keyed.transform("batch/train/3")  # the transform of one sub-key label

Adding a transform is one module (a ``Transform`` subclass with its facts as class attributes)
and one line in ``registry.REGISTRY``; one written outside lie_ray is declared under the
``lie_ray.transforms`` entry points of its own package, or passed to ``register`` (docs/api.md:
Bring your own transform). Nothing here imports torch: Ray Data's encryption actors
stay light.
"""

from lie_ray.transforms.base import Transform
from lie_ray.transforms.registry import (
    REGISTRY,
    KeyedTransform,
    TransformSpec,
    build,
    from_arrays,
    names,
    register,
    transform_class,
)

__all__ = [
    "REGISTRY",
    "Transform",
    "TransformSpec",
    "KeyedTransform",
    "build",
    "from_arrays",
    "names",
    "register",
    "transform_class",
]
