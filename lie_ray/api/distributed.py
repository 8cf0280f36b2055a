"""``lie_ray.evaluate(..., ray=...)``: the same batches on a pool of Ray actors.

Each actor gets the model (weights are not secret), the transform by name and the key as a
file path it opens itself, as the CLI's evaluation actors do: key material never enters a task
argument or Ray's object store. A batch is attacked whole and seeded per image, so the tables
equal the in-process ones whatever actor a batch meets. The attacks the request names must be
loadable in every actor (lie_ray's own, or an installed package's entry points).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa
import torch

from lie_ray.api.defence import make_defender
from lie_ray.attacks.outcome import Batch
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.pipeline import image_chunks
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.keys import load_key
from lie_ray.models.device import images_to_device, to_device
from lie_ray.transforms import TransformSpec


class ModelShard:
    """Ray Data actor: a user's model behind its transform, evaluated chunk by chunk."""

    def __init__(
        self,
        model: torch.nn.Module,
        spec: dict | None,
        key_path: str | None,
        settings: EvalSettings,
        plain_model,
        own,
        name: str,
        prepared: dict | None = None,
    ):
        torch.set_num_threads(settings.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        # The actor's own copy of the models: eval mode and frozen weights for good.
        model = model.to(self.device).eval().requires_grad_(False)
        if plain_model is not None:
            plain_model = plain_model.to(self.device).eval().requires_grad_(False)
        keyed = None if spec is None else TransformSpec(**spec).keyed(load_key(key_path))
        self.engine = Engine(make_defender(model, keyed), settings, own, plain_model, prepared)
        self.name = name

    def __call__(self, chunk: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        parts = []
        for i in range(len(chunk["ids"])):
            images = np.array(chunk["images"][i], dtype=np.uint8)
            batch = Batch(
                images_to_device(images, self.device),
                to_device(np.array(chunk["labels"][i], dtype=np.int64), self.device),
                np.array(chunk["ids"][i], dtype=np.int64),
            )
            parts.append(self.engine.evaluate_batch(batch, "test", self.name))
        return {column: np.concatenate([p[column] for p in parts]) for column in parts[0]}


def evaluate_on_ray(request, key, address: bool | str, prepared: dict | None = None) -> pa.Table:
    """``request`` (``lie_ray.api.evaluate.Request``) on an actor pool; ``key``: the key
    file's path (None without a transform); ``address``: True or a cluster's address;
    ``prepared``: what the keyless attacks prepared in the caller's process (the bypass, the
    key search), handed to every actor so that none fits again."""
    import ray
    import ray.data

    from lie_ray.infra.session import ray_session

    keyed, settings = request.keyed, request.settings
    spec = None if keyed is None else dataclasses.asdict(keyed.spec)
    blocks = image_chunks(request.ids, request.labels, request.images, settings.batch_size)
    if isinstance(address, str) and not ray.is_initialized():
        ray.init(address=address)  # the user's cluster, still joined for their next call
    with ray_session():
        results = ray.data.from_arrow(blocks).map_batches(
            ModelShard,
            fn_constructor_kwargs={
                "model": request.model,
                "spec": spec,
                "key_path": None if key is None else str(key),
                "settings": settings,
                "plain_model": request.plain_model,
                "own": request.attacker_images,
                "name": request.name,
                "prepared": prepared,
            },
            compute=ray.data.ActorPoolStrategy(
                size=min(settings.actors, len(blocks)), max_tasks_in_flight_per_actor=1
            ),
            batch_size=1,
            batch_format="numpy",
        )
        table = pa.concat_tables(
            list(results.iter_batches(batch_size=None, batch_format="pyarrow"))
        )
    return table
