"""``python -m lie_ray.sweep``: the whole study (``lie_ray.app.study``), as ``lie-ray sweep``."""

from lie_ray.app.cli import sweep_main as main

if __name__ == "__main__":
    main()
