"""Ray Data actor: evaluates chunks of images for any scenario of the run, its models kept warm.

One actor pool serves a whole evaluation (``lie_ray.evaluation.pipeline``), so an actor meets
every scenario: it loads a scenario's defender the first time one of its chunks arrives and
keeps it, with the Plain model (for transfer attacks), which scenarios share. Start-up and
loading are paid once per actor, not once per scenario and split.
The key is opened from its path inside the actor, so nothing secret travels with the task.
Each output row is one (image, evaluation, epsilon).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from lie_ray.attacks.bypass import fit_bypass
from lie_ray.evaluation import cascade
from lie_ray.evaluation.defender import Defender, load_defender, load_network
from lie_ray.evaluation.protocols import PROTOCOLS, Batch, Outcome, applicable, white_box
from lie_ray.evaluation.settings import (
    RECOVERED_K,
    SANITY_PGD,
    SANITY_PGD_2X,
    SANITY_UNBOUNDED,
    WORST_CASES,
    EvalSettings,
)
from lie_ray.keys import FIXED_LABEL
from lie_ray.models.device import configure, images_to_device, prepare_network, to_device
from lie_ray.privacy import known_plaintext, targets
from lie_ray.transforms import transform_class


def evaluations(encrypted: bool, has_plain_model: bool, key_recoverable: bool = False) -> list[str]:
    """The protocols run on a scenario, in ``PROTOCOLS``' order (bpda reuses bpda-identity)."""
    return [
        name for name in PROTOCOLS if applicable(name, encrypted, has_plain_model, key_recoverable)
    ]


def key_recoverable(policy: str | None, transform: str | None, variant: str | None = None) -> bool:
    """Whether leaked pairs reveal the key the attacked images use: one key for every image
    (``fixed``) of a transform with a known-plaintext recovery, which models each transform's
    default variant (FFX's ``reference`` variant divides differently)."""
    if policy != "fixed" or transform is None:
        return False
    cls = transform_class(transform)
    return cls.known_plaintext and cls.check_variant(variant) == cls.variants[0]


def rows_per_test_image(
    encrypted: bool, has_plain_model: bool, settings: EvalSettings, recoverable: bool = False
) -> int:
    """Output rows per test image: its clean row, then at every epsilon each evaluation and
    the worst cases, then the sanity runs. (A train image gives one row.) The driver counts
    rows with this to know when a scenario is complete."""
    per_epsilon = len(evaluations(encrypted, has_plain_model, recoverable)) + len(WORST_CASES)
    return 1 + len(settings.epsilons) * per_epsilon + len(sanity_runs(settings))


def sanity_runs(settings: EvalSettings) -> list[tuple[str, float, EvalSettings]]:
    """(row name, epsilon, settings) of each sanity run; none without an attacked epsilon."""
    eps = settings.headline_epsilon()
    if not settings.sanity or eps is None:
        return []
    doubled = settings.replace(
        pgd_steps=2 * settings.pgd_steps, pgd_restarts=2 * settings.pgd_restarts
    )
    return [
        (SANITY_UNBOUNDED, 1.0, settings),
        (SANITY_PGD, eps, settings),
        (SANITY_PGD_2X, eps, doubled),
    ]


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
        attacker_images: np.ndarray,
    ):
        torch.set_num_threads(settings.torch_threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        configure(self.device)
        self.scenarios, self.settings = scenarios, settings
        self.key_path = key_path
        self.plain_checkpoint = plain_checkpoint
        # Plain train images the attacker owns (PBA's fitting set, the leaked pairs): public
        # data, never attacked.
        self.attacker_images = attacker_images
        self.warm: dict[str, tuple[Defender, dict]] = {}
        self.shared: dict = {}  # the Plain model, for every scenario
        self.loads: Counter[str] = Counter()  # checkpoints read, by scenario (tests check 1)

    def __call__(self, chunks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Ray Data may hand over read-only views: copies (a few hundred KB) keep torch quiet.
        parts = [
            self.evaluate(
                str(chunks["scenario"][i]),
                str(chunks["split"][i]),
                np.array(chunks["images"][i], dtype=np.uint8),
                np.array(chunks["labels"][i], dtype=np.int64),
                np.array(chunks["ids"][i], dtype=np.int64),
            )
            for i in range(len(chunks["scenario"]))
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def load(self, scenario: str) -> tuple[Defender, dict]:
        """The scenario's defender and attack context, read on first use and then kept."""
        if scenario not in self.warm:
            entry = self.scenarios[scenario]
            defender = load_defender(entry["checkpoint"], self.key_path)
            self.loads[scenario] += 1
            defender.model = prepare_network(defender.model, self.device, self.settings.compile)
            context = {}
            if defender.encrypted:
                context.update(self.keyless_knowledge(defender))
                if self.plain_checkpoint:
                    context["plain_model"] = self.keep(
                        "plain_model",
                        lambda: prepare_network(
                            load_network(self.plain_checkpoint)[0],
                            self.device,
                            self.settings.compile,
                        ),
                    )
            self.warm[scenario] = defender, context
        return self.warm[scenario]

    def keyless_knowledge(self, defender: Defender) -> dict:
        return keyless_knowledge(defender, self.attacker_images, self.settings, self.device)

    def keep(self, name, make):
        """What several scenarios use (the Plain model), made once."""
        if name not in self.shared:
            self.shared[name] = make()
        return self.shared[name]

    def evaluate(
        self, scenario: str, split: str, images: np.ndarray, labels: np.ndarray, ids: np.ndarray
    ) -> dict[str, np.ndarray]:
        defender, context = self.load(scenario)
        batch = Batch(images_to_device(images, self.device), to_device(labels, self.device), ids)
        return evaluate_batch(defender, context, batch, self.settings, split, scenario)


def keyless_knowledge(
    defender: Defender, attacker_images: np.ndarray, settings: EvalSettings, device: torch.device
) -> dict:
    """What the strongest keyless attackers build from their own images, once per scenario:
    PBA's stand-in for the transform, and the keys recovered from k leaked pairs (where pairs
    reveal the key). Built where the attack runs: a recovered key is key material, and never
    travels."""
    torch.manual_seed(settings.attacker_seed)
    own = images_to_device(attacker_images, device)
    ids = np.arange(len(own))
    knowledge = {
        "bypass": fit_bypass(
            defender.model,
            lambda x: defender.model(defender.encrypt(x, ids[: len(x)])),
            own,
            defender.key.block_size,
            settings.pba_steps,
            seed=settings.attacker_seed,
        )
    }
    spec = defender.key.spec
    if key_recoverable(defender.policy.name, spec.name, spec.variant):
        pairs = attacker_images[: RECOVERED_K[-1]]  # the most any attack leaks
        leaked = defender.key.cipher(FIXED_LABEL).encrypt(pairs)
        knowledge["recovered"] = recovered_ciphers(spec.name, pairs, leaked, spec.block_size)
    return knowledge


def evaluate_batch(
    defender: Defender,
    context: dict,
    batch: Batch,
    settings: EvalSettings,
    split: str = "test",
    scenario: str = "",
    only: set[str] | None = None,
) -> dict[str, np.ndarray]:
    """One batch's rows: its clean predictions, then for a test batch every evaluation at
    every epsilon, the worst cases and the sanity runs (a train batch is scored clean only).
    ``only``: run just these evaluations (the Python API's choice; the worst cases then unite
    what ran). The actors and ``lie_ray.api`` both evaluate through this, so their figures
    mean the same."""
    torch.manual_seed(settings.attacker_seed)
    clean = defender.predict(batch.images, batch.ids)
    every = np.arange(len(batch.ids))
    rows = [(split, 0.0, every, Outcome(clean, torch.zeros(len(clean), device=clean.device)))]
    if split == "test":
        rows += attack_rows(defender, context, batch, clean, settings, only)
    return to_columns(scenario, rows, batch, clean)


def attack_rows(
    defender: Defender,
    context: dict,
    batch: Batch,
    clean: torch.Tensor,
    settings: EvalSettings,
    only: set[str] | None = None,
) -> list[tuple]:
    """Every evaluation at every epsilon, each on the rows the mode gives it, then the worst
    cases (``lie_ray.evaluation.cascade``), then the sanity runs."""
    names = [
        n
        for n in evaluations(defender.encrypted, "plain_model" in context, "recovered" in context)
        if only is None or n in only
    ]
    plan = cascade.Plan(names, defender.encrypted)

    def attack(name: str, eps: float, rows: np.ndarray, done: dict) -> Outcome:
        part = batch if len(rows) == len(batch.ids) else batch.subset(rows)
        # What ran at this epsilon on every one of these rows, for reuse (bpda reuses
        # bpda-identity, recovered-key-k a smaller k's run with the same key): ``r`` and
        # ``rows`` are ascending, so a covering run's positions are a search away.
        ran = {
            n: o.subset(np.searchsorted(r, rows))
            for n, (r, o) in done.items()
            if o is not None and np.isin(rows, r).all()
        }
        return PROTOCOLS[name](defender, part, eps, settings, {**context, "done": ran})

    rows = cascade.run(
        plan, settings.epsilons, settings.evaluation == "cascade", clean, batch.labels, attack
    )
    every = np.arange(len(batch.ids))
    rows += [
        (name, eps, every, white_box(defender, batch, eps, run))
        for name, eps, run in sanity_runs(settings)
    ]
    return rows


def recovered_ciphers(
    name: str, plain: np.ndarray, leaked: np.ndarray, block_size: int
) -> dict[int, object]:
    """Per k in ``RECOVERED_K``, the transform with the key recovered from the first k leaked
    pairs (whatever is still undetermined after them, as the recovery's best guess). Where
    more pairs recover the same key as fewer (one pair often determines it), the k's share
    one object, and ``recovered-key-k`` reuses the smaller k's outcome instead of attacking
    again with the same key."""
    ciphers, distinct = {}, []  # (arrays, cipher) per distinct recovery
    for k in RECOVERED_K:
        _, arrays = known_plaintext.smallest_k(name, plain[:k], leaked[:k], block_size)
        ciphers[k] = next((c for earlier, c in distinct if same_arrays(earlier, arrays)), None)
        if ciphers[k] is None:
            ciphers[k] = targets.from_arrays(name, arrays, block_size)
            distinct.append((arrays, ciphers[k]))
    return ciphers


def same_arrays(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a
    )


def to_columns(
    scenario: str, rows: list[tuple], batch: Batch, clean: torch.Tensor
) -> dict[str, np.ndarray]:
    """One output row per image per (evaluation, epsilon), attacked or not: the driver counts
    rows to know when a scenario is done. An image a cascaded attack skipped (its attacker
    had broken it already) keeps its clean prediction, with ``attacked`` False; the results
    count attacked rows only."""
    n = len(batch.ids)
    labels, clean_np = batch.labels.cpu().numpy(), clean.cpu().numpy()
    columns = {
        name: [] for name in ("adv_pred", "linf", "attacked", "reused", "broken_by", "broken_at")
    }
    for _, _, covered, outcome in rows:
        predictions, linf = clean_np.copy(), np.zeros(n)
        attacked = np.zeros(n, dtype=bool)
        if outcome is not None:
            predictions[covered] = outcome.predictions.cpu().numpy()
            linf[covered] = outcome.linf.cpu().numpy()
            attacked[covered] = True
        worst = outcome is not None and outcome.broken_by is not None
        columns["adv_pred"].append(predictions)
        columns["linf"].append(linf)
        columns["attacked"].append(attacked)
        columns["reused"].append(attacked & (outcome is not None and outcome.reused))
        columns["broken_by"].append(outcome.broken_by if worst else np.full(n, "", object))
        columns["broken_at"].append(outcome.broken_at if worst else np.full(n, np.nan))
    predictions = np.concatenate(columns["adv_pred"])
    return {
        "scenario": np.full(n * len(rows), scenario),
        "evaluation": np.repeat([name for name, _, _, _ in rows], n),
        "epsilon": np.repeat([eps for _, eps, _, _ in rows], n).astype(np.float64),
        "id": np.tile(batch.ids, len(rows)),
        "label": np.tile(labels, len(rows)),
        "clean_pred": np.tile(clean_np, len(rows)),
        "adv_pred": predictions,
        "correct": predictions == np.tile(labels, len(rows)),
        "linf": np.concatenate(columns["linf"]).astype(np.float64),
        "attacked": np.concatenate(columns["attacked"]),
        "reused": np.concatenate(columns["reused"]),  # attacked, by an earlier run's outcome
        "broken_by": np.concatenate(columns["broken_by"]).astype(str),
        "broken_at": np.concatenate(columns["broken_at"]).astype(np.float64),
    }
