"""lie_ray as a library: its adaptive evaluation on any classifier behind any transform
(``evaluate``), and a trained scenario back as a plain ``nn.Module`` (``load``).

    import lie_ray
    result = lie_ray.evaluate(model, images, labels, transform="le", key="master.json",
                              eps=[8 / 255], threat="keyless")
    result.results.to_pandas()   # the columns of results.parquet
    defended = lie_ray.load("runs/smoke", "Encrypted")   # plain images in, logits out
"""

from lie_ray.api.evaluate import THREATS, Evaluation, evaluate
from lie_ray.api.load import load

__all__ = ["Evaluation", "THREATS", "evaluate", "load"]
