"""``lie-ray verify OUT``: every worst case of an evaluation, recomputed from the images that
decided it (``lie_ray.evaluation.saved``), as anyone holding the model and the key can.

For each scenario it loads the checkpoint the run record names (refused if it now holds
another run) with the key (refused unless it is the one the checkpoint was trained with), and
the test images (refused unless their files are the ones recorded). Per worst case and
epsilon it takes each image's deciding image (the saved one where an attack broke it, else
the plain test image), checks it lies within eps of the plain image (of the plain image's
ciphertext, for the channel attacker's) in whole 8-bit levels, classifies it in fp32 through
the defended pipeline (the network alone, for a ciphertext), and counts the errors. A figure
agrees when that count equals ``results.parquet``'s; robust accuracy so re-verified is an upper
bound, as RobustBench's checks of outside evaluations are.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from lie_ray.attacks.outcome import CIPHER, levels
from lie_ray.attacks.spec import WORST_CASE_NAMES, WORST_CASES
from lie_ray.data.cifar import Split, data_record, load_split
from lie_ray.errors import LieRayError
from lie_ray.evaluation.defender import checkpoint_record, load_defender
from lie_ray.infra import atomic, provenance, storage
from lie_ray.infra.checkpoints import META_FILE
from lie_ray.keys import key_location
from lie_ray.models.device import images_to_device

CHUNK = 512  # images per forward pass
# the worst cases of attackers who perturb the plain image (not the channel's ciphertexts)
PLAIN_IMAGE_WORST_CASES = tuple(w.name for w in WORST_CASES if "channel" not in w.tiers)


@dataclass(frozen=True)
class Figure:
    """One worst case at one epsilon: what ``results.parquet`` says, and what the saved
    images give again."""

    scenario: str
    worst_case: str
    epsilon: float
    n: int
    recorded: int  # errors recorded
    recomputed: int  # errors re-classified
    outside: int  # deciding images further than eps from their plain image
    changed: int  # images whose re-classified prediction is not the recorded one

    @property
    def agrees(self) -> bool:
        return self.recorded == self.recomputed and self.outside == 0

    def line(self) -> str:
        text = (
            f"{self.scenario} {self.worst_case} at eps {self.epsilon:.4f}: results.parquet "
            f"has {self.recorded} errors of {self.n}, the saved images give {self.recomputed}"
        )
        if self.outside:
            text += f"; {self.outside} images lie outside eps"
        if self.changed:
            text += f"; {self.changed} predictions differ from the recorded ones"
        return text


def verify(
    out_dir: str | Path, key_path: str | Path | None = None, data_dir: str | Path | None = None
) -> list[Figure]:
    """Every worst case of the evaluation in ``out_dir``, recomputed; ``key_path`` defaults to
    ``OUT/keys/master.json`` (a sweep's), ``data_dir`` to the directory the record names.
    Raises ``LieRayError`` (one line) for a changed image file, a checkpoint that now holds
    another run, a wrong key, or other data."""
    out = Path(out_dir)
    results, record = read_results(out)
    if key_path is None and (out / "keys" / "master.json").is_file():
        key_path = out / "keys" / "master.json"
    test = recorded_test_split(record, data_dir)
    figures = []
    for scenario, entry in sorted(record["adversarial"].items()):
        decided = read_images(out, entry)
        defender = load_recorded_defender(out, record, scenario, key_location(key_path))
        rows = results.filter(pc.equal(results["scenario"], scenario)).to_pylist()
        for row in rows:
            if row["evaluation"] in WORST_CASE_NAMES:
                figures.append(recompute(row, decided, defender, test))
    return figures


def read_results(out: Path) -> tuple[pa.Table, dict]:
    path = out / "results.parquet"
    if not path.is_file():
        raise LieRayError(f"no results.parquet in {out}: pass the --out folder of an evaluation")
    results = pq.read_table(path)
    record = provenance.record_of(results.schema) or {}
    if "adversarial" not in record:
        raise LieRayError(
            f"{path} records no saved adversarial images (written by an older lie_ray): "
            "evaluate again to keep them"
        )
    return results, record


def read_images(out: Path, entry: dict) -> pa.Table:
    """A scenario's saved images, refused unless the file is the one the evaluation wrote."""
    path = out / entry["file"]
    if not path.is_file():
        raise LieRayError(f"{path} is missing: restore it, or evaluate again")
    found = provenance.sha256(path)
    if found != entry["sha256"]:
        raise LieRayError(
            f"{path} is not the file the evaluation wrote (SHA-256 {found[:12]}, recorded "
            f"{entry['sha256'][:12]}): restore it, or evaluate again"
        )
    return pq.read_table(path)


def recorded_test_split(record: dict, data_dir: str | Path | None) -> Split:
    """The test images the evaluation attacked, refused unless their files are the ones the
    record names."""
    data = data_dir or record["data"]["directory"]
    recorded = record["data"]["files"]
    found = data_record(data)["files"]
    different = sorted(name for name in recorded if found.get(name) != recorded[name])
    if different:
        raise LieRayError(
            f"the data at {data} is not what the evaluation used ({', '.join(different)} "
            "differ): pass --data with the recorded CIFAR-10 batches"
        )
    return load_split(data, "test", limit=record["settings"]["test_limit"])


def load_recorded_defender(out: Path, record: dict, scenario: str, key_path: str | None):
    """The scenario's defender from the checkpoint the record names (relative to OUT where it
    lay inside), which must still hold the recorded run; in eval mode, fp32, on the CPU."""
    recorded = record["checkpoints"][scenario]
    # a storage URI as it is; a path relative to OUT, or absolute (the join leaves it be)
    checkpoint = recorded if storage.is_uri(recorded) else str(out / recorded)
    if not storage.exists(storage.join(checkpoint, META_FILE)):
        raise LieRayError(f"checkpoint {checkpoint} of {scenario} is missing: restore it")
    held = checkpoint_record(checkpoint).get("run_id")
    wanted = record["training"][scenario]["run_id"]
    if held != wanted:
        raise LieRayError(
            f"checkpoint {checkpoint} of {scenario} holds run {str(held)[:12]}, but the "
            f"evaluation was of run {wanted[:12]}: restore the evaluated checkpoint"
        )
    defender = load_defender(checkpoint, key_path)  # refuses a key it was not trained with
    defender.model = defender.model.float().eval()
    return defender


@dataclass(frozen=True)
class Deciding:
    """One worst case's deciding images at one epsilon: the plain test images with the saved
    plain-space images in their place, and the saved ciphertexts (the channel attacker's) with
    the test positions they belong to."""

    images: np.ndarray  # (n, H, W, C) uint8, every test image's plain-space deciding image
    rows: np.ndarray  # test positions of the saved images, in the file's order
    made: np.ndarray  # the saved images themselves
    cipher: np.ndarray  # which of them are ciphertexts
    predicted: np.ndarray  # the predictions recorded for them

    @classmethod
    def of(cls, row: dict, decided: pa.Table, test: Split) -> Deciding:
        mine = decided.filter(
            pc.and_(
                pc.equal(decided["evaluation"], row["evaluation"]),
                pc.less_equal(pc.abs(pc.subtract(decided["epsilon"], row["epsilon"])), 1e-9),
            )
        )
        rows = positions(test.ids, mine["id"].to_numpy())
        made = np.frombuffer(b"".join(mine["image"].to_pylist()), np.uint8).reshape(
            len(rows), *test.images.shape[1:]
        )
        cipher = np.array([s == CIPHER for s in mine["space"].to_pylist()], dtype=bool)
        images = test.images.copy()
        images[rows[~cipher]] = made[~cipher]
        predicted = np.asarray(mine["adv_pred"].to_pylist(), dtype=np.int64)
        return cls(images, rows, made, cipher, predicted)


def positions(ids: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """Where each of ``wanted`` lies in ``ids`` (every one of them does: a saved image's id is
    a test image's)."""
    order = np.argsort(ids, kind="stable")
    return order[np.searchsorted(ids, wanted, sorter=order)].astype(np.int64)


def recompute(row: dict, decided: pa.Table, defender, test: Split) -> Figure:
    """One worst case at one epsilon, from the images that decided it."""
    eps = row["epsilon"]
    found = Deciding.of(row, decided, test)
    predictions = classify(defender, found.images, test.ids)
    outside = int((distance(found.images, test.images) > levels(eps)).sum())
    cipher_rows = found.rows[found.cipher]
    if len(cipher_rows):
        sent = encrypted(defender, test.images[cipher_rows], test.ids[cipher_rows])
        outside += int((distance(found.made[found.cipher], sent) > levels(eps)).sum())
        predictions[cipher_rows] = network_predictions(defender, found.made[found.cipher])
    changed = int((predictions[found.rows] != found.predicted).sum())
    return Figure(
        row["scenario"],
        row["evaluation"],
        eps,
        row["n"],
        round(row["error"] * row["n"]),
        int((predictions != test.labels).sum()),
        outside,
        changed,
    )


def export_robustbench(
    out_dir: str | Path, target: str | Path, data_dir: str | Path | None = None
) -> list[Path]:
    """The adversarial sets of the scenarios whose forward pass is deterministic without ids
    (no key, or one fixed key), in the layout RobustBench takes an outside evaluation in: per
    scenario, worst case of a plain-image attacker and epsilon, a ``.pt`` float tensor of the
    test set's size (N, 3, H, W) in [0, 1], in the test set's order, beside a JSON of what its
    "New external evaluation" template asks (robust accuracy, the method). The channel
    attacker's ciphertexts are no plain images: its worst case is left out. Run after
    ``verify``: it reads the same files, checked by digest."""
    out, target = Path(out_dir), Path(target)
    results, record = read_results(out)
    test = recorded_test_split(record, data_dir)
    written = []
    for scenario, entry in sorted(record["adversarial"].items()):
        definition = record["training"][scenario]["scenario"]
        if definition["transform"] and definition["key_policy"] != "fixed":
            continue  # its key changes with the image's id: no model of images alone
        decided = read_images(out, entry)
        for row in results.filter(pc.equal(results["scenario"], scenario)).to_pylist():
            if row["evaluation"] not in PLAIN_IMAGE_WORST_CASES or row["epsilon"] <= 0:
                continue
            found = Deciding.of(row, decided, test)
            name = f"{row['evaluation']}_eps{row['epsilon']:.4f}"
            path = target / scenario / f"{name}.pt"
            path.parent.mkdir(parents=True, exist_ok=True)
            tensor = torch.from_numpy(found.images).permute(0, 3, 1, 2).float().div(255)
            with atomic.staged_file(path) as staging:
                torch.save(tensor.contiguous(), staging)
            about = {
                "model": scenario,
                "leaderboard": "cifar10, Linf (lie_ray's test images, in this order)",
                "eps": row["epsilon"],
                "robust_accuracy": 1 - row["error"],
                "n": row["n"],
                "labels": test.labels.tolist(),
                "method": f"lie_ray {row['evaluation']}: per image the first attack of that "
                "attacker to break it (see the run record's attacks)",
                "run_id": record["training"][scenario]["run_id"],
            }
            atomic.write_bytes(path.with_suffix(".json"), json.dumps(about, indent=1).encode())
            written.append(path)
    return written


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per image, the largest change of any pixel, in whole 8-bit levels."""
    if len(a) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).reshape(len(a), -1).max(1)


def classify(defender, images: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The deployed pipeline's predictions on 8-bit plain images, in fp32 chunks."""
    out = []
    for start in range(0, len(images), CHUNK):
        part = images_to_device(images[start : start + CHUNK], torch.device("cpu"))
        out.append(defender.predict(part, ids[start : start + CHUNK]).numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def encrypted(defender, images: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """The ciphertexts the pipeline sends its network for 8-bit plain images, as 8-bit HWC."""
    with torch.no_grad():
        sent = defender.encrypt(images_to_device(images, torch.device("cpu")), ids)
    return torch.round(sent * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def network_predictions(defender, ciphertexts: np.ndarray) -> np.ndarray:
    """The network's predictions on 8-bit ciphertexts (the channel attacker's images)."""
    with torch.no_grad():
        x = images_to_device(ciphertexts, torch.device("cpu"))
        return defender.model(x).argmax(1).numpy()
