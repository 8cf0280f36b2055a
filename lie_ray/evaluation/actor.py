"""Ray Data actor: holds one scenario's trained pipeline and evaluates every batch it is given.

Models are loaded once per actor; the key is opened from its path inside the actor, so nothing
secret travels with the task. Each output row is one (image, evaluation, epsilon).
"""
from __future__ import annotations

import numpy as np
import torch

from lie_ray.evaluation.defender import attacker_ciphers, load_defender, load_network
from lie_ray.evaluation.protocols import (PROTOCOLS, Batch, Outcome, applicable, worst_of)
from lie_ray.evaluation.settings import WORST_CASE, EvalSettings


class EvaluateShard:
    def __init__(self, scenario: str, checkpoint: str, key_path: str | None,
                 key_policy: str | None, key_batch_size: int, settings: EvalSettings,
                 plain_checkpoint: str | None = None, split: str = "test"):
        torch.set_num_threads(settings.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.scenario, self.settings, self.split = scenario, settings, split
        self.defender = load_defender(checkpoint, key_path, key_policy, key_batch_size)
        self.defender.model.to(self.device)
        self.context = {}
        if self.defender.encrypted:
            self.context["eot_ciphers"] = attacker_ciphers(self.defender.key.spec,
                                                           settings.eot_keys,
                                                           settings.attacker_seed)
        if plain_checkpoint and self.defender.encrypted:
            self.context["plain_model"] = load_network(plain_checkpoint)[0].to(self.device)

    def __call__(self, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch.manual_seed(self.settings.attacker_seed)
        # Ray Data may hand over read-only views: a copy (a few hundred KB) keeps torch quiet.
        images = torch.from_numpy(np.array(columns["image"], dtype=np.uint8)).to(self.device)
        batch = Batch(images.permute(0, 3, 1, 2).float().div(255).contiguous(),
                      torch.from_numpy(np.asarray(columns["label"])).long().to(self.device),
                      np.asarray(columns["id"]))
        clean = self.defender.predict(batch.images, batch.ids)
        zero = torch.zeros(len(clean), device=self.device)
        rows = [(self.split, 0.0, Outcome(clean, zero))]
        if self.split == "test":
            rows += self.attacks(batch, clean, zero)
        return self.to_columns(rows, batch, clean)

    def attacks(self, batch: Batch, clean: torch.Tensor, zero: torch.Tensor) -> list[tuple]:
        names = [n for n in PROTOCOLS if applicable(n, self.defender.encrypted,
                                                    "plain_model" in self.context)]
        rows = []
        for eps in self.settings.epsilons:
            outcomes = [PROTOCOLS[name](self.defender, batch, eps, self.settings, self.context)
                        if eps > 0 else Outcome(clean, zero) for name in names]
            rows += [(name, eps, outcome) for name, outcome in zip(names, outcomes)]
            rows.append((WORST_CASE, eps, worst_of(outcomes, batch.labels)))
        return rows

    def to_columns(self, rows: list[tuple], batch: Batch, clean: torch.Tensor
                   ) -> dict[str, np.ndarray]:
        n = len(batch.ids)
        labels, clean_np = batch.labels.cpu().numpy(), clean.cpu().numpy()
        predictions = np.concatenate([o.predictions.cpu().numpy() for _, _, o in rows])
        return {
            "scenario": np.full(n * len(rows), self.scenario),
            "evaluation": np.repeat([name for name, _, _ in rows], n),
            "epsilon": np.repeat([eps for _, eps, _ in rows], n).astype(np.float64),
            "id": np.tile(batch.ids, len(rows)),
            "label": np.tile(labels, len(rows)),
            "clean_pred": np.tile(clean_np, len(rows)),
            "adv_pred": predictions,
            "correct": predictions == np.tile(labels, len(rows)),
            "linf": np.concatenate([o.linf.cpu().numpy() for _, _, o in rows]).astype(np.float64),
        }
