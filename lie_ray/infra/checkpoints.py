"""The layout of a training checkpoint, shared by the Train workers that write it and the
evaluation actors that read it.

A checkpoint directory holds ``state.pt`` (model, optimiser, epoch) and ``meta.json`` (the
scenario, the network's build arguments, the transform and the epoch's metrics; keys only by
fingerprint). Kept apart from ``lie_ray.training``, whose import pulls in Ray Train: an
evaluation actor that imports only this starts 1.5 s sooner.
"""

STATE_FILE, META_FILE = "state.pt", "meta.json"
