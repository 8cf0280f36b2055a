"""A card per evaluated scenario, ``OUT/cards/<scenario>.json``: RobustBench's model-info
fields (``model_info/<dataset>/Linf/<name>.json`` in its repository: name, architecture,
dataset, eps, clean and robust accuracy, the published figure beside the measured one, the
forward passes per prediction, ``unreliable``) and lie_ray's own: the transform, its block
size and key policy, the key's fingerprint, the run and the code, every attacker tier's robust
accuracy per epsilon with its n, 95% interval and attack success rate over the correctly
classified images, and what the keyless attacker's fits reached.

RobustBench's accuracies are percentages as strings ("94.78"); lie_ray's own figures are
fractions, as in ``results.parquet``. ``external`` is the robust accuracy a key-based defence
is worth to its headline attacker (the keyless one; for a defence without a key, the key
holder's: there is nothing to withhold), and ``unreliable`` is true when a sanity check cast
doubt on any worst case of the scenario."""

from __future__ import annotations

import json
from pathlib import Path

from lie_ray.attacks.catalogue.autoattack import NAME as AUTOATTACK
from lie_ray.attacks.spec import WORST_CASE, WORST_CASE_KEYLESS, WORST_CASES
from lie_ray.infra import atomic
from lie_ray.report.paper import PAPER_TABLE_I, Row, find, same_epsilon

DIRECTORY = "cards"
PAPER = (
    "AprilPyone, Sirichotedumrong & Kiya, Adversarial Test on Learnable Image Encryption, "
    "2019 (arXiv 1907.13342), Table I"
)
# Published claims a card sets beside what lie_ray measured, with their attack's definition.
PUBLISHED = {
    "ffx": {
        "source": "AprilPyone & Kiya, IEEE TIFS 2021 (block-wise FFX, M = 4)",
        "clean_acc": 0.9230,
        "robust_acc": 0.9148,
        "eps": 8 / 255,
        "attack": "PGD at 8/255 by an attacker holding a wrong key; attack success counted "
        "over the correctly classified images",
    },
}


def published(scenario: str, transform: str) -> dict | None:
    """The paper's Table I figures for its five scenarios, else a transform's own paper's."""
    if scenario in PAPER_TABLE_I:
        train, test, adversarial = PAPER_TABLE_I[scenario]
        return {
            "source": PAPER,
            "clean_acc": round(1 - test, 4),
            "robust_acc": round(1 - adversarial, 4),
            "eps": 0.1,
            "attack": "PGD (eps 0.1, step 0.01, 20 steps) on the plain image, then encrypted "
            "and classified; error over every test image",
        }
    return PUBLISHED.get(transform)


def percent(accuracy: float | None) -> str:
    return "" if accuracy is None else f"{100 * accuracy:.2f}"


def tier_figures(rows: list[Row], scenario: str, epsilons: list[float]) -> dict:
    """Per worst case and epsilon: robust accuracy, n, its 95% interval, and the attack
    success rate over the images the model classified correctly (the worst case unites the
    clean errors, so the images it broke are its errors less the clean ones)."""
    test = find(rows, scenario, "test")
    figures: dict[str, dict] = {}
    for worst_case in WORST_CASES:
        for eps in epsilons:
            row = find(rows, scenario, worst_case.name, eps)
            if row is None:
                continue
            success = None
            if test is not None and test.n == row.n:  # both over every test image
                wrong, clean_wrong = round(row.error * row.n), round(test.error * test.n)
                if row.n > clean_wrong:
                    success = round((wrong - clean_wrong) / (row.n - clean_wrong), 6)
            figures.setdefault(worst_case.name, {})[f"{eps:.6f}"] = {
                "robust_acc": round(1 - row.error, 6),
                "n": row.n,
                "interval": [round(1 - row.ci_high, 6), round(1 - row.ci_low, 6)],
                "attack_success_rate": success,
            }
    return figures


def card(
    scenario: str,
    rows: list[Row],
    record: dict,
    epsilon: float | None,
    doubted: dict[str, list[str]],
    fits: dict,
) -> dict:
    """One scenario's card, from the results' rows and run record."""
    training = record["training"][scenario]
    definition, settings = training["scenario"], training["settings"]
    transform = definition["transform"] or {}
    keyed = bool(transform)
    test = find(rows, scenario, "test")
    epsilons = sorted({r.epsilon for r in rows if r.scenario == scenario and r.epsilon > 0})
    tiers = tier_figures(rows, scenario, epsilons)
    headline = WORST_CASE_KEYLESS if keyed else WORST_CASE
    at = next((e for e in epsilons if epsilon is not None and same_epsilon(e, epsilon)), None)
    external = tiers.get(headline, {}).get(f"{at:.6f}") if at is not None else None
    autoattack = find(rows, scenario, AUTOATTACK, at) if at is not None else None
    claim = published(scenario, transform.get("name", ""))
    network = f"ResNet18 (width {settings['width']})"
    if keyed:
        network = f"adaptation network ({settings['adaptation_channels']} channels) + {network}"
    return {
        # RobustBench's model-info fields
        "name": scenario,
        "link": "",
        "authors": "",
        "venue": "lie_ray",
        "additional_data": False,
        "number_forward_passes": 1,
        "dataset": "cifar10",
        "architecture": network,
        "eps": "" if at is None else f"{at:.6f}",
        "clean_acc": percent(None if test is None else 1 - test.error),
        "reported": percent(None if claim is None else claim["robust_acc"]),
        "autoattack_acc": percent(None if autoattack is None else 1 - autoattack.error),
        "external": percent(None if external is None else external["robust_acc"]),
        "footnote": (
            f"external: the {'keyless attacker' if keyed else 'key holder'}'s worst case "
            "(lie_ray's attacker tiers); a small network on a 5,438-image CIFAR-10 subset"
        ),
        "unreliable": bool(doubted),
        # lie_ray's own
        "lie_ray": {
            "transform": transform.get("name", "none"),
            "block_size": transform.get("block_size"),
            "variant": transform.get("variant"),
            "key_policy": definition["key_policy"] if keyed else None,
            "key_fingerprint": training.get("key_fingerprint") or "",
            "run_id": training["run_id"],
            "code_commit": (record.get("code") or {}).get("commit"),
            "test_images": None if test is None else test.n,
            "tiers": tiers,
            "fits": fits,
            "sanity_failed": doubted,
            "published": claim,
        },
    }


def write_cards(
    directory: Path,
    rows: list[Row],
    record: dict,
    scenarios: list[str],
    epsilon: float | None,
    doubts: dict[str, dict[str, list[str]]],
    fits: dict[str, dict],
) -> list[Path]:
    """``cards/<scenario>.json`` for every evaluated scenario (each written whole)."""
    written = []
    for scenario in scenarios:
        if scenario not in record.get("training", {}):
            continue
        doubted, fitted = doubts.get(scenario, {}), fits.get(scenario, {})
        made = card(scenario, rows, record, epsilon, doubted, fitted)
        path = directory / DIRECTORY / f"{scenario}.json"
        atomic.write_bytes(path, (json.dumps(made, indent=2, sort_keys=False) + "\n").encode())
        written.append(path)
    return written
