"""The board of key-based defences: ``lie-ray board RUN...`` ranks every defence of finished
runs (``--preset board``: Plain and each transform of the family with a fixed key, at the
study scale) under the same attacker tiers, and writes ``board.md``, ``board.json`` and
``board.png``.

Each defence's figures come from what its run already wrote, never recomputed: its card
(``cards/<scenario>.json``: clean and robust accuracy per tier, the fits, the published claim),
``privacy.parquet`` (the best ciphertext-only reconstruction, the leaked pairs that recovered
the whole key), ``training.parquet`` (what training it cost) and ``timings.json`` (the run's
machine and wall time). The share of the key read off the weights is the larger of the
bypass's and the key search's; where it is the whole key, anyone holding the model decrypts
every image under that key, and the board says so.

Defences are ranked by the keyless attacker's robust accuracy at 8/255 (the headline of a
key-based defence: lie_ray's attacker tiers), then at 0.1, the key holder's breaking ties.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from lie_ray.attacks.spec import (
    WORST_CASE,
    WORST_CASE_CHANNEL,
    WORST_CASE_KEYLESS,
    WORST_CASE_LEAKED,
)
from lie_ray.errors import LieRayError
from lie_ray.infra import atomic
from lie_ray.infra.tables import read_privacy
from lie_ray.report.cards import DIRECTORY as CARDS
from lie_ray.report.fits import BYPASS, SEARCH, of_kind
from lie_ray.report.markdown import markdown_table

EPSILONS = (8 / 255, 0.1)  # the board's columns: the field's CIFAR-10 ball and the paper's
TIERS = (  # (worst case, the board's name for its attacker)
    (WORST_CASE_KEYLESS, "keyless"),
    (WORST_CASE_LEAKED, "leaked"),
    (WORST_CASE, "with key"),
    (WORST_CASE_CHANNEL, "channel"),
)
WHOLE_KEY = 1 - 1e-9  # a key share read off the weights at least this is the whole key
CAVEAT = (
    "lie_ray's models are far smaller and weaker than the papers' (each run's network, epochs "
    "and training images are under Runs; the papers trained ResNet-18s for 200 epochs on all "
    "50,000 CIFAR-10 training images), so only the ranking and the gaps between attacker "
    "tiers compare with published figures, not the accuracies."
)
FILES = ("board.md", "board.json", "board.png")


@dataclass(frozen=True)
class Run:
    """One finished run the board reads: its folder, cards and side tables."""

    path: Path
    cards: list[dict]
    privacy: list[dict]
    training: dict[str, dict]  # scenario -> its row of training.parquet
    timings: dict  # timings.json, {} where the run did not write one


def read_run(path: str | Path) -> Run:
    """A run folder's cards and side tables, or a one-line error naming what is missing."""
    folder = Path(path)
    cards = sorted((folder / CARDS).glob("*.json"))
    if not cards:
        raise LieRayError(
            f"{folder} holds no {CARDS}/*.json: pass the --out folder of a finished sweep "
            f"(or run 'lie-ray report --results {folder}' on a finished evaluation)"
        )
    privacy = read_privacy(folder)
    training: dict[str, dict] = {}
    if (folder / "training.parquet").is_file():
        import pyarrow.parquet as pq

        table = pq.read_table(folder / "training.parquet")
        columns = ("scenario", "started_at", "finished_at", "epochs", "train_images")
        wanted = [c for c in columns if c in table.column_names]
        training = {r["scenario"]: r for r in table.select(wanted).to_pylist()}
    timings_path = folder / "timings.json"
    return Run(
        folder,
        [json.loads(p.read_text()) for p in cards],
        [] if privacy is None else privacy.to_pylist(),
        training,
        json.loads(timings_path.read_text()) if timings_path.is_file() else {},
    )


def at_epsilon(tier: dict, eps: float) -> dict | None:
    """A card tier's figures at ``eps`` (cards key them by eps printed to six places)."""
    return next((v for k, v in tier.items() if abs(float(k) - eps) < 1e-5), None)


def privacy_figures(rows: list[dict], transform: str, block_size: int | None) -> dict:
    """The best ciphertext-only reconstruction (highest SSIM: the attacker's best guess of the
    plain images from encrypted ones alone) and the leaked pairs that recovered the whole key,
    for ``transform`` at ``block_size`` (rows at another block size are another defence)."""
    mine = [
        r
        for r in rows
        if r["transform"] == transform
        and (block_size is None or r.get("block_size") in (None, block_size))
    ]
    only = [
        r
        for r in mine
        if str(r["threat_model"]).startswith("ciphertext-only") and r["ssim"] is not None
    ]
    best = max(only, key=lambda r: r["ssim"], default=None)
    recovered = [
        r["k"]
        for r in mine
        if r["attack"] == "known-plaintext" and r["key_recovered"] and r["k"] is not None
    ]
    return {
        "ciphertext_only_ssim": None if best is None else round(best["ssim"], 4),
        "ciphertext_only_attack": None if best is None else best["attack"],
        "pairs_to_recover_key": min(recovered, default=None),
    }


def key_read_from_weights(fits: dict) -> float | None:
    """The larger share of the key's entries the keyless attacker read off the weights: the
    bypass's stand-in or the key search's best key (scored afterwards with the true key)."""
    shares = [
        of_kind(fits, BYPASS).get("key_share_read"),
        of_kind(fits, SEARCH).get("key_share"),
    ]
    shares = [s for s in shares if s is not None and math.isfinite(s)]
    return max(shares, default=None)


def training_minutes(row: dict | None) -> float | None:
    if not row or row.get("started_at") is None or row.get("finished_at") is None:
        return None
    seconds = row["finished_at"] - row["started_at"]
    return round(seconds / 60, 2) if math.isfinite(seconds) else None


def entry(run: Run, card: dict, name: str) -> dict:
    """One defence's row of the board."""
    ours = card["lie_ray"]
    keyed = ours["transform"] != "none"
    robust = {}
    for eps in EPSILONS:
        for worst_case, label in TIERS:
            figures = at_epsilon(ours["tiers"].get(worst_case, {}), eps)
            robust[f"{label} {eps:.4f}"] = None if figures is None else figures["robust_acc"]
    share = key_read_from_weights(ours.get("fits") or {}) if keyed else None
    privacy = privacy_figures(run.privacy, ours["transform"], ours["block_size"]) if keyed else {}
    return {
        "defence": name,
        "scenario": card["name"],
        "run": str(run.path),
        "run_id": ours["run_id"],
        "transform": ours["transform"],
        "block_size": ours["block_size"],
        "key_fingerprint": ours["key_fingerprint"],
        "clean_acc": None if card["clean_acc"] == "" else round(float(card["clean_acc"]) / 100, 4),
        "test_images": ours["test_images"],
        "robust_acc": robust,
        "published": ours.get("published"),
        "key_share_from_weights": share,
        "weights_give_the_key_away": share is not None and share >= WHOLE_KEY,
        **privacy,
        "training_minutes": training_minutes(run.training.get(card["name"])),
        "unreliable": card["unreliable"],
    }


def entries(runs: list[Run]) -> list[dict]:
    """Every defence of every run, ranked; a scenario name met in two runs is told apart by
    its run's folder."""
    names = [card["name"] for run in runs for card in run.cards]
    rows = []
    for run in runs:
        for card in run.cards:
            name = card["name"]
            rows.append(
                entry(run, card, name if names.count(name) == 1 else f"{name} ({run.path.name})")
            )
    # keyless at each eps in turn (a run without 8/255 ranks by 0.1), then the key holder's
    order = [f"{label} {eps:.4f}" for label in ("keyless", "with key") for eps in EPSILONS]

    def rank(row):
        figures = row["robust_acc"]
        return (*(-(figures[column] or 0.0) for column in order), row["defence"])

    return sorted(rows, key=rank)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def claim_cell(claim: dict | None) -> str:
    if not claim:
        return "-"
    return f"{100 * claim['clean_acc']:.1f} / {100 * claim['robust_acc']:.1f} at {claim['eps']:.4f}"


def privacy_cell(row: dict) -> str:
    if row["transform"] == "none":
        return "-"
    parts = []
    if row.get("ciphertext_only_ssim") is not None:
        parts.append(f"SSIM {row['ciphertext_only_ssim']:.2f} ({row['ciphertext_only_attack']})")
    pairs = row.get("pairs_to_recover_key")
    parts.append(f"key from {pairs} pair(s)" if pairs is not None else "key not recovered")
    return "; ".join(parts)


def weights_cell(row: dict) -> str:
    share = row["key_share_from_weights"]
    if share is None:
        return "-"
    if row["weights_give_the_key_away"]:
        return "whole key: anyone with the model decrypts every image"
    return f"{share:.2f}"


def markdown(rows: list[dict], runs: list[Run]) -> str:
    header = ["rank", "defence", "M", "clean"]
    for eps in EPSILONS:
        header += [f"{label} {eps:.4f}" for _, label in TIERS]
    header += ["published (clean / robust)", "privacy", "key read off weights", "training"]
    body = []
    for rank, row in enumerate(rows, 1):
        cells = [
            str(rank),
            row["defence"] + (" (unreliable)" if row["unreliable"] else ""),
            str(row["block_size"] or "-"),
            percent(row["clean_acc"]),
        ]
        for eps in EPSILONS:
            cells += [percent(row["robust_acc"][f"{label} {eps:.4f}"]) for _, label in TIERS]
        cells += [
            claim_cell(row["published"]),
            privacy_cell(row),
            weights_cell(row),
            "-" if row["training_minutes"] is None else f"{row['training_minutes']:.1f} min",
        ]
        body.append(cells)
    where = "\n".join(f"- {line}" for line in run_lines(runs))
    return (
        "# A board of key-based defences\n\n"
        f"{CAVEAT}\n\n"
        "Accuracies in percent over the test images (clean, then robust accuracy per attacker "
        "tier: `keyless` holds the weights, the transform and images of its own but no key and "
        "no leaked pair; `leaked` also holds leaked plain/encrypted pairs; `with key` holds the "
        "key; `channel` perturbs the encrypted image in transit). Ranked by keyless robust "
        f"accuracy at {EPSILONS[0]:.4f}. `published`: the defence's own paper, under its own "
        "attack (see board.json for its definition). `privacy`: the best reconstruction from "
        "ciphertexts alone, and the fewest leaked pairs that recovered the whole key. `key "
        "read off weights`: the share of the key's entries the keyless attacker found in the "
        "model alone. `unreliable`: a sanity check failed.\n\n"
        + markdown_table(header, body)
        + "\n\n![clean against keyless robust accuracy](board.png)\n\n"
        "## Runs\n\n" + where + "\n"
    )


def run_lines(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        timings = run.timings
        machine = timings.get("machine") or {}
        measured = timings.get("measured_seconds") or {}
        wall = sum(measured.values()) if measured else None
        predicted = (timings.get("predicted") or {}).get("expected", {}).get("total", {})
        text = f"`{run.path}`"
        if timings.get("preset"):
            text += f", preset {timings['preset']}"
        keyed = [c for c in run.cards if c["lie_ray"]["transform"] != "none"] or run.cards
        text += f": {keyed[0]['architecture']}"
        trained = {(r.get("epochs"), r.get("train_images")) for r in run.training.values()}
        if len(trained) == 1 and None not in next(iter(trained)):
            epochs, images = next(iter(trained))
            text += f", {epochs} epochs on {images:,} training images"
        if machine:
            text += f", on {machine.get('cpu', '?')} ({machine.get('cores', '?')} cores)"
        if wall is not None:
            text += f", {wall / 60:.1f} min"
            if predicted.get("wall_seconds"):
                text += f" (--estimate expected {predicted['wall_seconds'] / 60:.1f} min)"
        lines.append(text)
    return lines


def figure(rows: list[dict], path: Path) -> None:
    """Clean accuracy against robust accuracy at 8/255: per defence the keyless attacker's
    point, with the leaked-pair and key holder's below it on one line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    eps = EPSILONS[0]
    markers = {"keyless": "o", "leaked": "^", "with key": "x"}
    for rank, row in enumerate(rows):
        x = row["clean_acc"]
        if x is None:
            continue
        points = {label: row["robust_acc"][f"{label} {eps:.4f}"] for label in markers}
        known = [v for v in points.values() if v is not None]
        if len(known) > 1:
            ax.plot([x, x], [min(known), max(known)], color="0.7", lw=1, zorder=1)
        for label, marker in markers.items():
            if points[label] is not None:
                ax.scatter(
                    x,
                    points[label],
                    marker=marker,
                    color="C0" if label == "keyless" else "0.3",
                    zorder=2,
                    label=label,
                )
        if points["keyless"] is not None:
            ax.annotate(
                row["defence"],
                (x, points["keyless"]),
                textcoords="offset points",
                xytext=(4, 4 if rank % 2 == 0 else -11),  # neighbours in rank alternate sides
                fontsize=8,
            )
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), title="attacker", fontsize=8)
    ax.set_xlabel("clean accuracy")
    ax.set_ylabel(f"robust accuracy at eps {eps:.4f} (8/255)")
    ax.set_title("Key-based defences: clean against robust accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    data = path.with_suffix(".tmp.png")
    fig.savefig(data)
    plt.close(fig)
    data.replace(path)


def write_board(runs: list[str | Path], out: str | Path) -> list[Path]:
    """``board.md``, ``board.json`` and ``board.png`` in ``out`` from the finished ``runs``;
    returns their paths. Each file is written whole (temp file, then rename)."""
    read = [read_run(path) for path in runs]
    rows = entries(read)
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    document = {
        "caveat": CAVEAT,
        "ranked_by": f"keyless robust accuracy at {EPSILONS[0]:.6f}",
        "epsilons": list(EPSILONS),
        "runs": [
            {
                "path": str(r.path),
                "preset": r.timings.get("preset"),
                "machine": r.timings.get("machine"),
                "measured_seconds": r.timings.get("measured_seconds"),
                "predicted": r.timings.get("predicted"),
            }
            for r in read
        ],
        "defences": rows,
    }
    atomic.write_bytes(folder / "board.json", (json.dumps(document, indent=1) + "\n").encode())
    atomic.write_bytes(folder / "board.md", markdown(rows, read).encode())
    figure(rows, folder / "board.png")
    return [folder / name for name in FILES]
