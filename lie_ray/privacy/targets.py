"""The transforms the privacy attacks aim at: ``lie_ray.transforms``, at the block size each
can use.

Every attack needs the same few things from a transform: encrypt and decrypt NHWC images, the
true key as reference-format arrays (to check a recovered key against), a transform rebuilt
from recovered arrays (to decrypt with it), and its key-space size. The family provides all of
them; this module only picks each transform's block size: the key's where the transform's
papers use it, else the transform's own (PE works on single pixels, EtC and ELE on 4x4 blocks).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lie_ray import transforms
from lie_ray.errors import LieRayError
from lie_ray.keys import Key
from lie_ray.transforms import Transform


def names() -> list[str]:
    return transforms.names()


def check_names(chosen: list[str], option: str = "--transforms") -> list[str]:
    known = names()
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise LieRayError(
            f"unknown transform(s) {', '.join(unknown)}: choose from {', '.join(known)} ({option})"
        )
    return chosen


def chosen(given: str | None, option: str = "--transforms") -> list[str]:
    """The transforms a comma-separated ``given`` names (None: every one), each checked."""
    if given is None:
        return names()
    picked = check_names([n.strip() for n in given.split(",") if n.strip()], option)
    if not picked:
        raise LieRayError(f"{option} names no transform: pass e.g. {option} le,shuffle")
    return picked


def block_size_for(name: str, block_size: int) -> int:
    """``block_size`` if transform ``name`` is used at it in its papers (LE: any), else the
    transform's first paper block size."""
    cls = transforms.transform_class(name)
    return (
        block_size
        if cls.block_size_from_key or block_size in cls.paper_block_sizes
        else cls.paper_block_sizes[0]
    )


def build(name: str, key: Key, block_size: int, label: str) -> Transform:
    """The transform ``name`` under the sub-key ``label`` of master ``key``."""
    return transforms.build(name, key, block_size_for(name, block_size), label)


def from_arrays(name: str, arrays: dict[str, Any], block_size: int) -> Transform:
    """A transform from (recovered) key arrays, in the reference format of ``key_arrays``."""
    return transforms.from_arrays(
        name,
        {k: v if isinstance(v, (str, bytes)) else np.asarray(v) for k, v in arrays.items()},
        block_size_for(name, block_size),
    )
