"""One Ray Data actor pool for a whole evaluation: every scenario's test and train split.

A pool per scenario and split paid the actors' start-up (torch, checkpoints, key, ciphers) ten
times for the paper's five scenarios and left actors idle at every pool's tail. One pool pays
it once, and its actors stay busy from one scenario to the next (``EvaluateShard`` keeps each
scenario's models warm).

A row of the dataset is a chunk of images of one scenario's split; a test chunk holds
``batch_size`` images, exactly what one batch was before: it is attacked whole and seeded alike,
so the tables do not depend on the pool's size or on how Ray Data groups rows into batches.
The driver streams the results and hands back each scenario as soon as all its rows are in,
while later ones still run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
from ray.data.extensions import ArrowVariableShapedTensorArray

from lie_ray.attacks.views import OwnImages
from lie_ray.data.cifar import Split
from lie_ray.evaluation.actor import EvaluateShard, prepare_scenario
from lie_ray.evaluation.engine import chosen_specs, offered, rows_per_test_image
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.infra.session import wants_gpu


def chunks(scenario: str, split: Split, size: int) -> list[pa.Table]:
    """``split`` in chunks of ``size`` images, one one-row table (one Ray Data block) each, so
    the pool hands out work a chunk at a time."""
    return [
        block.append_column("scenario", pa.array([scenario])).append_column(
            "split", pa.array([split.name])
        )
        for block in image_chunks(split.ids, split.labels, split.images, size)
    ]


def image_chunks(
    ids: np.ndarray, labels: np.ndarray, images: np.ndarray, size: int
) -> list[pa.Table]:
    """Rows ``size`` at a time as one-row tables of tensors (``ids``, ``labels``, ``images``):
    the blocks an evaluation pool takes one at a time (the CLI's and ``lie_ray.evaluate``'s)."""
    tensor = lambda array: ArrowVariableShapedTensorArray.from_numpy([array])  # noqa: E731
    return [
        pa.table(
            {
                "ids": tensor(ids[s : s + size]),
                "labels": tensor(labels[s : s + size]),
                "images": tensor(images[s : s + size]),
            }
        )
        for s in range(0, len(labels), size)
    ]


def train_chunk(settings: EvalSettings) -> int:
    """The train split only gets clean predictions (eval mode, no randomness: the same for any
    chunking: the old and the new tables are equal), so it goes in chunks of at least 2,048
    images: far fewer Ray tasks, each of which waits up to 0.1 s for Ray Data's scheduling
    loop before its actor gets the next."""
    return max(settings.batch_size, 2048)


def expected_rows(
    row: dict,
    plain_checkpoint: str | None,
    settings: EvalSettings,
    test_images: int,
    train_images: int,
) -> int:
    """How many example rows a scenario's evaluation produces (test and train split): the
    attacks its actors will find applicable, from its run record (``engine.offered``)."""
    definition = json.loads(row["record"])["scenario"]
    transform = definition["transform"] or {}
    available = offered(
        bool(row["encrypted"]),
        plain_checkpoint is not None,
        True,  # the attacker's images: held out of the train split, always there
        definition["key_policy"],
        transform.get("name"),
        transform.get("variant"),
    )
    per_image = rows_per_test_image(chosen_specs(settings, available), settings)
    return test_images * per_image + train_images


def prepare_in_tasks(
    trained: list[dict],
    key_path: str | None,
    settings: EvalSettings,
    plain_checkpoint: str | None,
    attacker: OwnImages,
    gpu: str = "auto",
) -> dict[str, tuple[dict[str, Any], dict[str, dict]]]:
    """Per encrypted scenario of ``trained``, one Ray task that fits what its keyless attacks
    prepare (``actor.prepare_scenario``), all side by side: (the prepared artefacts, their
    figures) by scenario. Every actor of the pool is then handed them instead of fitting
    again: the fit is paid once per scenario, not once per actor."""
    task = ray.remote(prepare_scenario).options(
        num_cpus=settings.torch_threads, num_gpus=1 if wants_gpu(gpu) else 0
    )
    attacker_ref = ray.put(attacker)  # once, not once per task
    pending = {
        row["scenario"]: task.remote(
            row["scenario"], row["checkpoint"], key_path, settings, plain_checkpoint, attacker_ref
        )
        for row in trained
        if row["encrypted"]
    }
    return dict(zip(pending, ray.get(list(pending.values()))))


def evaluate_in_pool(
    trained: list[dict],
    test: Split,
    train: Split,
    key_path: str | None,
    settings: EvalSettings,
    plain_checkpoint: str | None,
    attacker: OwnImages,
    prepared: dict[str, dict[str, Any]] | None = None,
    gpu: str = "auto",
) -> Iterator[tuple[str, pa.Table]]:
    """Evaluate every scenario of ``trained`` (rows of ``training.parquet``) on ``test`` (every
    evaluation) and ``train`` (clean predictions: the defender's part of the train split) in
    one pool of ``settings.actors`` actors, each handed the attacker's own images and what
    was ``prepared`` for each scenario. Yields (scenario, its example rows) as each scenario
    completes."""
    expected = {
        row["scenario"]: expected_rows(
            row, plain_checkpoint, settings, len(test.labels), len(train.labels)
        )
        for row in trained
    }
    # Costliest scenarios first, so the pool's tail is cheap work (Plain's chunks) that evens
    # out the actors' finishing times; each scenario's part is still written as soon as done.
    by_cost = sorted(trained, key=lambda row: -expected_rows(row, plain_checkpoint, settings, 1, 0))
    blocks = [
        block
        for row in by_cost
        for split, size in ((test, settings.batch_size), (train, train_chunk(settings)))
        for block in chunks(row["scenario"], split, size)
    ]
    scenarios = {row["scenario"]: {"checkpoint": row["checkpoint"]} for row in trained}
    results = ray.data.from_arrow(blocks).map_batches(
        EvaluateShard,
        fn_constructor_kwargs={
            "scenarios": scenarios,
            "key_path": key_path,
            "settings": settings,
            "plain_checkpoint": plain_checkpoint,
            "attacker": attacker,
            "prepared": prepared,
        },
        # One chunk at a time per actor: a chunk queued behind a long attack would leave the
        # other actors idle at the end; sending the next one costs milliseconds.
        compute=ray.data.ActorPoolStrategy(size=settings.actors, max_tasks_in_flight_per_actor=1),
        batch_size=1,
        batch_format="numpy",
        num_gpus=1 if wants_gpu(gpu) else 0,
    )
    received: dict[str, list[pa.Table]] = defaultdict(list)
    counts: dict[str, int] = defaultdict(int)
    for block in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        for scenario in pc.unique(block["scenario"]).to_pylist():
            rows = block.filter(pc.equal(block["scenario"], scenario))
            received[scenario].append(rows)
            counts[scenario] += rows.num_rows
            if counts[scenario] == expected[scenario]:
                yield scenario, pa.concat_tables(received.pop(scenario))
    if received:  # a miscount here would silently drop a scenario's part
        raise RuntimeError(
            f"evaluation rows {dict(counts)} do not match the expected "
            f"{expected} for {sorted(received)}"
        )
