"""Running on Ray and on disks: sessions, storage URIs, whole-or-nothing writes, the console,
interruption, output checks. Imports nothing of lie_ray but ``errors``."""
