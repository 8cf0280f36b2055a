"""lie_ray: does learnable image encryption survive adversarial attack? Measured on Ray."""
__version__ = "0.1.0"
