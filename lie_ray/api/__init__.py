"""lie_ray as a library, in one home: its adaptive evaluation on any classifier behind any
transform (``evaluate``), a trained scenario back as a plain ``nn.Module`` (``load``), and the
privacy attacks on any transform (``privacy_attack``, which is ``lie_ray.privacy.attack``).

    import lie_ray
    result = lie_ray.evaluate(model, images, labels, transform="le", key="master.json",
                              eps=[8 / 255], threat="keyless")
    result.results.to_pandas()   # the columns of results.parquet
    defended = lie_ray.load("runs/smoke", "Encrypted")   # plain images in, logits out
    found = lie_ray.privacy_attack("shuffle", images, attacker_images=own)
"""

from lie_ray.api.evaluate import THREATS, Evaluation, evaluate
from lie_ray.api.load import load
from lie_ray.privacy.api import attack as privacy_attack

__all__ = ["Evaluation", "THREATS", "evaluate", "load", "privacy_attack"]
