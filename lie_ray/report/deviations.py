"""``## Deviations from the paper``: every place where the run differs from what the paper
states, generated from the run records the results carry (never from today's defaults), so
a smoke run says it trained 1 epoch of a narrow network on a slice, and a paper run says
only what is left: the readings the paper leaves open and what it never stated.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lie_ray.evaluation.settings import PAPER_EPSILON
from lie_ray.infra import provenance
from lie_ray.scenarios import PAPER_SCENARIOS
from lie_ray.training.settings import ADV_BPDA

# What the paper states (Sec. III): CIFAR-10 (50,000 / 10,000), batch 128, SGD lr 0.1 -> 0.01
# after 40 of 100 epochs, ResNet18 (width 64), PGD eps 0.1, step 0.01, 20 iterations for
# adversarial testing and training alike.
PAPER = {
    "epochs": 100,
    "batch_size": 128,
    "lr": 0.1,
    "lr_drop_epoch": 40,
    "lr_after_drop": 0.01,
    "width": 64,
    "train_images": 50_000,
    "test_images": 10_000,
    "eps": 0.1,
    "step_size": 0.01,
    "steps": 20,
}
ALWAYS = [
    "The paper does not say where its PGD took the gradient through the cipher; each reading "
    "runs under its own name (`pgd`, `paper-literal`, `bpda-identity`), and Table I shows all.",
    "Adversarial images are scored as 8-bit images within eps exactly (the paper does not say "
    "how its float noise reached the 8-bit cipher).",
]


def section(
    directory: str | Path, training: pa.Table | None = None, table: str = "results.parquet"
) -> str:
    """The section for the results in ``directory`` ("" for a table without run records);
    ``training``, the training table, says how many images each run really trained on."""
    path = Path(directory) / table
    if not path.is_file():
        return ""
    record = provenance.record_of(pq.read_schema(path))
    if not record or not record.get("training"):
        return ""
    lines = (
        training_deviations(record["training"])
        + image_counts(training)
        + evaluation_deviations(record)
    )
    return (
        "\n## Deviations from the paper\n\nFrom the run records of these results; the "
        "paper's values in brackets.\n\n" + "\n".join(f"- {line}" for line in lines + ALWAYS) + "\n"
    )


def differing(runs: dict[str, dict], field: str, paper) -> str:
    """'Plain 1, Encrypted 1' for the runs whose ``settings[field]`` is not the paper's."""
    off = {
        name: run["settings"][field]
        for name, run in runs.items()
        if run["settings"].get(field) != paper
    }
    values = set(map(str, off.values()))
    if not off:
        return ""
    if len(values) == 1 and len(off) == len(runs):
        return values.pop()
    return ", ".join(f"{name} {value}" for name, value in off.items())


def training_deviations(runs: dict[str, dict]) -> list[str]:
    lines = []
    for field, label in (
        ("epochs", "epochs"),
        ("batch_size", "batch size"),
        ("lr", "learning rate"),
        ("lr_drop_epoch", "learning-rate drop at epoch"),
        ("lr_after_drop", "learning rate after the drop"),
        ("width", "ResNet18 base width"),
    ):
        shown = differing(runs, field, PAPER[field])
        if shown:
            lines.append(f"Training {label}: {shown} [{PAPER[field]}].")
    held = sorted({run["settings"].get("attacker_holdout") for run in runs.values()}, key=str)
    if held and held != [None]:
        lines.append(
            f"The last {', '.join(map(str, held))} train images are held out of training as "
            "the attacker's own (its bypass, key search and leaked pairs use them; never "
            "attacked) [the paper trains on all 50,000]."
        )
    unstated = sorted(
        {(run["settings"]["momentum"], run["settings"]["weight_decay"]) for run in runs.values()}
    )
    lines.append(
        "SGD momentum and weight decay, which the paper does not state: "
        + ", ".join(f"{m:g} and {wd:g}" for m, wd in unstated)
        + "."
    )
    for name, run in runs.items():
        definition = run["scenario"]
        paper = PAPER_SCENARIOS.get(name)
        if paper and paper.encrypted and definition.get("key_policy") != paper.key_policy:
            lines.append(
                f"{name} keys with `{definition.get('key_policy')}` [`{paper.key_policy}`]."
            )
        attack = definition.get("adversarial_training")
        if not attack:
            continue
        settings = (attack["eps"], attack["step_size"], attack["steps"])
        if settings != (PAPER["eps"], PAPER["step_size"], PAPER["steps"]):
            lines.append(
                f"{name}'s adversarial training: PGD eps {attack['eps']:g}, step "
                f"{attack['step_size']:g}, {attack['steps']} step(s) [eps 0.1, step "
                "0.01, 20 steps]."
            )
        if definition.get("encrypted"):
            lines.append(
                f"{name}'s adversarial training meets the cipher by `{attack['attack']}` "
                + (
                    "(true forward, the transform's surrogate backward where it has no gradient)"
                    if attack["attack"] == ADV_BPDA
                    else "(plain autograd through the pipeline as written)"
                )
                + ' ["the same PGD" as the attack, which it leaves open].'
            )
    return lines


def image_counts(training: pa.Table | None) -> list[str]:
    """How many train and test images the runs saw per epoch (training.parquet), where that
    is not the whole CIFAR-10: a --train-limit, or a data directory holding a subset."""
    if training is None or "train_images" not in training.column_names:
        return []
    lines = []
    for column, paper in (
        ("train_images", PAPER["train_images"]),
        ("test_images", PAPER["test_images"]),
    ):
        counts = sorted(set(training[column].to_pylist()) - {None})
        if counts and counts != [paper]:
            split = column.split("_")[0]
            lines.append(
                f"Training saw {', '.join(f'{c:,}' for c in counts)} {split} images "
                f"per epoch [{paper:,}]."
            )
    return lines


def evaluation_deviations(record: dict) -> list[str]:
    settings = record.get("settings") or {}
    lines = []
    limit = settings.get("test_limit")
    if limit:
        lines.append(f"Attacked the first {limit} test images [{PAPER['test_images']:,}].")
    if settings.get("pgd_steps") not in (None, PAPER["steps"]):
        lines.append(f"Evaluation PGD runs {settings['pgd_steps']} steps [20].")
    ball = ((record.get("attacks") or {}).get("ball") or {}).get(f"{PAPER_EPSILON:g}")
    if ball:
        lines.append(
            f"Every attack works in the ball it is scored in, whole 8-bit levels: at eps "
            f"{PAPER_EPSILON:g} that is {ball['levels']}/255 = {ball['effective']:.4f}, so PGD's "
            f"step is {ball['step_size']:.4f} [step {PAPER['step_size']:g}]; rows keep the eps "
            "asked for."
        )
    epsilons = settings.get("epsilons") or []
    if epsilons and not any(abs(e - PAPER_EPSILON) < 1e-9 for e in epsilons):
        lines.append(
            f"Epsilon {PAPER_EPSILON:g} was not evaluated "
            f"(epsilons {', '.join(f'{e:g}' for e in epsilons)}) [0.1]."
        )
    return lines
