"""Plug-ins written outside lie_ray, declared under an entry-point group of their package's own
``pyproject.toml`` (``lie_ray.transforms``, ``lie_ray.attacks``): each loaded once per process,
the first time a name lie_ray does not know is asked for, so that Ray's actors and workers find
them as the driver does."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Any

from lie_ray.errors import LieRayError


def declared(group: str, kind: str) -> Iterator[Any]:
    """Every object the installed packages declare under ``group``, each named as its entry
    point is (``kind``: "transform", "attack", for the one-line errors)."""
    for point in entry_points(group=group):
        try:
            loaded = point.load()
        except Exception as error:  # a broken plug-in names itself, not a stack trace
            raise LieRayError(
                f"{kind} entry point {point.name!r} ({point.value}) failed to load: {error}"
            ) from error
        name = getattr(loaded, "name", None)
        if name != point.name:
            raise LieRayError(
                f"{kind} entry point {point.name!r} ({point.value}) names a {kind} whose name "
                f"is {name!r}: make them agree"
            )
        yield loaded
