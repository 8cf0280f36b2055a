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

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from lie_ray.attacks.outcome import CIPHER, levels
from lie_ray.attacks.spec import WORST_CASE_NAMES
from lie_ray.data.cifar import Split, data_record, load_split
from lie_ray.errors import LieRayError
from lie_ray.evaluation import saved
from lie_ray.evaluation.defender import checkpoint_record, load_defender
from lie_ray.infra import provenance
from lie_ray.keys import key_location
from lie_ray.models.device import images_to_device

CHUNK = 512  # images per forward pass


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
    found = saved.sha256(path)
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
    checkpoint = out / record["checkpoints"][scenario]  # an absolute path stays as it is
    if not checkpoint.exists():
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


def recompute(row: dict, decided: pa.Table, defender, test: Split) -> Figure:
    """One worst case at one epsilon, from the images that decided it."""
    eps = row["epsilon"]
    mine = decided.filter(
        pc.and_(
            pc.equal(decided["evaluation"], row["evaluation"]),
            pc.less_equal(pc.abs(pc.subtract(decided["epsilon"], eps)), 1e-9),
        )
    )
    position = {int(i): p for p, i in enumerate(test.ids)}
    rows = np.array([position[int(i)] for i in mine["id"].to_pylist()], dtype=np.int64)
    shape = test.images.shape[1:]
    made = np.zeros((len(rows), *shape), np.uint8)
    for k, image in enumerate(mine["image"].to_pylist()):
        made[k] = np.frombuffer(image, np.uint8).reshape(shape)
    cipher = np.array([s == CIPHER for s in mine["space"].to_pylist()], dtype=bool)
    plain_rows, cipher_rows = rows[~cipher], rows[cipher]
    images = test.images.copy()
    images[plain_rows] = made[~cipher]
    predictions = classify(defender, images, test.ids)
    outside = int((distance(images, test.images) > levels(eps)).sum())
    if len(cipher_rows):
        sent = encrypted(defender, test.images[cipher_rows], test.ids[cipher_rows])
        outside += int((distance(made[cipher], sent) > levels(eps)).sum())
        predictions[cipher_rows] = network_predictions(defender, made[cipher])
    recorded_predictions = np.asarray(mine["adv_pred"].to_pylist(), dtype=np.int64)
    changed = int((predictions[rows] != recorded_predictions).sum())
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
