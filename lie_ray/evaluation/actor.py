"""Ray Data actor: evaluates chunks of images for any scenario of the run, its models kept warm.

One actor pool serves a whole evaluation (``lie_ray.evaluation.pipeline``), so an actor meets
every scenario: it loads a scenario's defender the first time one of its chunks arrives and
keeps it, with its attacks' engine (``lie_ray.evaluation.engine``) and the Plain model (for
transfer attacks), which scenarios share. Start-up and loading are paid once per actor, not
once per scenario and split. The key is opened from its path inside the actor, so nothing
secret travels with the task.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from lie_ray.attacks.outcome import Batch
from lie_ray.attacks.views import OwnImages
from lie_ray.evaluation.defender import load_defender, load_network
from lie_ray.evaluation.engine import Engine
from lie_ray.evaluation.settings import EvalSettings
from lie_ray.models.device import configure, images_to_device, prepare_network, to_device


class EvaluateShard:
    """Called with chunks (one row = one chunk of one scenario's split: ``scenario``,
    ``split``, ``ids``, ``labels``, ``images``); ``scenarios`` maps each name to its
    ``checkpoint``, whose run record defines the defender. A chunk is attacked as one batch,
    seeded alike, so results do not depend on which actor, or which other chunks, it met."""

    def __init__(
        self,
        scenarios: dict[str, dict],
        key_path: str | None,
        settings: EvalSettings,
        plain_checkpoint: str | None,
        attacker: OwnImages,
        prepared: dict[str, dict[str, Any]] | None = None,
    ):
        torch.set_num_threads(settings.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        configure(self.device)
        self.scenarios, self.settings = scenarios, settings
        self.key_path = key_path
        self.plain_checkpoint = plain_checkpoint
        # The attacker's own labelled images, held out of training and never attacked, and
        # what its keyless attacks prepared from them once per scenario (prepare_scenario).
        self.attacker = attacker
        self.prepared = prepared or {}
        self.engines: dict[str, Engine] = {}
        self.plain_model: torch.nn.Module | None = None  # loaded once, for every scenario
        self.loads: Counter[str] = Counter()  # checkpoints read, by scenario (tests check 1)

    def __call__(self, chunks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Ray Data may hand over read-only views: copies (a few hundred KB) keep torch quiet.
        parts = [
            self.evaluate_chunk(
                str(chunks["scenario"][i]),
                str(chunks["split"][i]),
                np.array(chunks["images"][i], dtype=np.uint8),
                np.array(chunks["labels"][i], dtype=np.int64),
                np.array(chunks["ids"][i], dtype=np.int64),
            )
            for i in range(len(chunks["scenario"]))
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def engine(self, scenario: str) -> Engine:
        """The scenario's engine (its defender, its attacks' views), made on first use and
        then kept."""
        if scenario not in self.engines:
            defender = load_defender(self.scenarios[scenario]["checkpoint"], self.key_path)
            self.loads[scenario] += 1
            defender.model = prepare_network(defender.model, self.device, self.settings.compile)
            self.engines[scenario] = Engine(
                defender,
                self.settings,
                self.attacker,
                self.load_plain_model if self.plain_checkpoint else None,
                self.prepared.get(scenario),
            )
        return self.engines[scenario]

    def load_plain_model(self) -> torch.nn.Module:
        if self.plain_model is None:
            network, _ = load_network(self.plain_checkpoint)
            self.plain_model = prepare_network(network, self.device, self.settings.compile)
        return self.plain_model

    def evaluate_chunk(
        self, scenario: str, split: str, images: np.ndarray, labels: np.ndarray, ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        batch = Batch(images_to_device(images, self.device), to_device(labels, self.device), ids)
        return self.engine(scenario).evaluate_batch(batch, split, scenario)


def prepare_scenario(
    scenario: str,
    checkpoint: str,
    key_path: str | None,
    settings: EvalSettings,
    plain_checkpoint: str | None,
    attacker: OwnImages,
) -> tuple[dict[str, Any], dict[str, dict]]:
    """Once per scenario, before its pool: what its keyless attacks prepare (the bypass, the
    key search), to be handed to every actor, and the figures they reached. Run as a Ray
    task (``lie_ray.evaluation.pipeline``); the key is read from its path here, as in an
    actor, and only the attacker's own artefacts come back."""
    shard = EvaluateShard(
        {scenario: {"checkpoint": checkpoint}}, key_path, settings, plain_checkpoint, attacker
    )
    engine = shard.engine(scenario)
    return engine.shared_preparations(), engine.fit_figures()
