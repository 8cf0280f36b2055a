"""``lie-ray evaluate``: every evaluation of every trained scenario, sharded over Ray actors.

Reads what ``lie-ray train`` wrote (``RUNS/training.parquet`` and the checkpoints it names),
evaluates the test set (and clean error on the train set) in one Ray Data actor pool
(``lie_ray.evaluation.pipeline``), and writes:

    OUT/examples.parquet   one row per image per (scenario, evaluation, epsilon)
    OUT/results.parquet    one row per (scenario, evaluation, epsilon): n, error, 95% CI
    OUT/adversarial/<scenario>.parquet   the images that decided its worst cases
                           (``lie_ray.evaluation.saved``; ``lie-ray verify`` checks them)
    OUT/gallery.png        plain / encrypted / adversarial / encrypted adversarial images,
                           each captioned true class -> predicted class
    OUT/report.md, OUT/curves.png   (``lie_ray.report``)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from lie_ray.attacks import PGD, deployed, effective_epsilon
from lie_ray.attacks.registry import check_reachable_from_actors
from lie_ray.attacks.seeding import salted
from lie_ray.attacks.views import OwnImages
from lie_ray.data.cifar import (
    Split,
    data_record,
    defender_part,
    held_out,
    load_split,
    resolve_data_dir,
)
from lie_ray.errors import LieRayError
from lie_ray.evaluation import saved
from lie_ray.evaluation.defender import checkpoint_record, load_defender, policy_spec
from lie_ray.evaluation.pipeline import evaluate_in_pool, prepare_in_tasks
from lie_ray.evaluation.settings import PAPER_EPSILON, EvalSettings
from lie_ray.evaluation.tables import attack_record, summarise, trained_rows
from lie_ray.infra import provenance, storage
from lie_ray.infra.atomic import write_parquet
from lie_ray.infra.images import CIFAR_CLASSES, save_grid
from lie_ray.keys import key_location
from lie_ray.keys.policies import load_key_for_policies

log = logging.getLogger("lie_ray")


def run_evaluation(
    runs_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    key_path: str | Path | None,
    settings: EvalSettings,
    scenarios: list[str] | None = None,
    resume: bool = False,
    gpu: str = "auto",
    parts: str | None = None,
) -> pa.Table:
    """Evaluate every trained scenario; return the results table.

    Each scenario's defender (transform, key policy, key-batch size) is the one its run
    record names, checked against its checkpoint. Each scenario's rows are kept in
    ``OUT/evaluations/<scenario>.parquet`` as soon as it is done. With ``resume``, a scenario
    whose file was made from the same run records, data and settings is read back instead of
    being attacked again. ``gpu``: "yes" asks for a GPU per actor (an autoscaling cluster then
    adds GPU nodes), "auto" only when the cluster has GPUs now. ``parts``: where the
    per-scenario files go instead (a path or storage URI).
    """
    out = Path(out_dir).resolve()
    check_reachable_from_actors(settings.attacks)
    trained = trained_rows(runs_dir, scenarios)
    every = trained_rows(runs_dir, None)
    records = {row["scenario"]: trained_record(row) for row in every}
    check_keys(key_path, [records[row["scenario"]] for row in trained])
    key = key_location(key_path)
    plain = next((r["checkpoint"] for r in every if r["scenario"] == "Plain"), None)
    plain_run = records["Plain"]["run_id"] if plain else None
    data = resolve_data_dir(data_dir)
    test = load_split(data, "test", limit=settings.test_limit)
    holdout, train_limit = held_out_part([records[row["scenario"]] for row in trained])
    everything = load_split(data, "train")
    train = defender_part(everything, holdout, train_limit)
    attacker = attacker_images(held_out(everything, holdout)[1], settings.attacker_images)
    record = {
        "kind": "evaluation",
        "settings": dataclasses.asdict(settings),
        "attacks": attack_record(settings),
        "data": data_record(data, test_limit=settings.test_limit),
        "code": provenance.code(),
        "plain_run_id": plain_run,
        "training": {row["scenario"]: records[row["scenario"]] for row in trained},
        # the checkpoint each scenario was evaluated from, which ``lie-ray verify`` loads
        # again: relative to OUT where it lies inside (a sweep's), so the folder can move
        "checkpoints": {row["scenario"]: within(out, row["checkpoint"]) for row in trained},
    }
    tables, locations, digests, pending = {}, {}, {}, []
    for row in trained:
        name = row["scenario"]
        locations[name] = storage.join(parts or out / "evaluations", f"{name}.parquet")
        digests[name] = evaluation_digest(records[name], plain_run, record)
        if resume and finished_part(locations[name], digests[name]):
            log.info("%s: already evaluated (%s), not run again", name, locations[name])
            tables[name] = storage.read_table(locations[name])
        else:
            pending.append(row)
    if pending:
        log.info(
            "evaluating %s on %d test images at eps %s",
            ", ".join(row["scenario"] for row in pending),
            len(test.labels),
            ", ".join(f"{e:.4f}" for e in settings.epsilons),
        )
    fits = {name: part_fits(table) for name, table in tables.items()}
    if pending:  # one actor pool for every scenario left; each part is kept once complete
        log.info("fitting the keyless attacks' bypass and key search, once per scenario")
        prepared = prepare_in_tasks(pending, key, settings, plain, attacker, gpu)
        for name, (_, figures) in prepared.items():
            fits[name] = figures
            log.info("%s: %s", name, fit_summary(figures))
        shared = {name: artefacts for name, (artefacts, _) in prepared.items()}
        for name, table in evaluate_in_pool(
            pending, test, train, key, settings, plain, attacker, shared, gpu
        ):
            metadata = {DIGEST_KEY: digests[name], FITS_KEY: json.dumps(fits.get(name, {}))}
            tables[name] = table.replace_schema_metadata(metadata)
            storage.write_table(tables[name], locations[name])
            log.info("evaluated %s (%d of %d)", name, len(tables), len(trained))
    record["fits"] = {name: fits[name] for name in sorted(fits) if fits[name]}
    record["adversarial"] = saved.write_images(tables, out)  # what ``lie-ray verify`` checks
    # promote: a part kept from an older lie_ray may lack a newer column (``reused``: null)
    examples = pa.concat_tables(
        (saved.without_images(t.replace_schema_metadata(None)) for t in tables.values()),
        promote_options="default",
    ).sort_by(
        [
            ("scenario", "ascending"),
            ("evaluation", "ascending"),
            ("epsilon", "ascending"),
            ("id", "ascending"),
        ]
    )
    write_parquet(provenance.with_record(examples, record), out / "examples.parquet")
    results = with_training_columns(summarise(examples), every)
    write_parquet(provenance.with_record(results, record), out / "results.parquet")
    write_gallery(trained, key, test, settings, out / "gallery.png")
    return results


DIGEST_KEY = b"lie_ray.evaluation"
FITS_KEY = b"lie_ray.fits"  # a part's fit figures, so that a resumed scenario keeps them


def within(out: Path, path: str) -> str:
    """``path`` relative to ``out`` where it lies inside it, else as it is (a storage URI)."""
    if storage.is_uri(path):
        return str(path)
    try:
        return str(Path(path).resolve().relative_to(out))
    except ValueError:
        return str(path)


def held_out_part(records: list[dict]) -> tuple[int, int | None]:
    """(the attacker's held-out images, the train limit) the scenarios were trained with,
    read from their run records: the attacker's images must be ones no scenario trained
    on, so scenarios trained with different parts are refused in one line."""
    parts = {
        (r["settings"].get("attacker_holdout"), r["settings"].get("train_limit")) for r in records
    }
    if len(parts) != 1 or None in {holdout for holdout, _ in parts}:
        raise LieRayError(
            "the scenarios were trained with different (or no) held-out attacker images "
            f"({sorted(parts, key=str)}): train them again in one run of this lie_ray"
        )
    return parts.pop()


def attacker_images(held: Split, fit: int) -> OwnImages:
    """The attacker's held-out images: it fits, searches and leaks pairs with the first
    ``fit`` (``--attacker-images``) and judges its fits on the rest."""
    if not 0 < fit < len(held.labels):
        raise LieRayError(
            f"--attacker-images {fit} leaves none of the {len(held.labels)} held-out images "
            f"to judge the attacker's fits on: pass --attacker-images < {len(held.labels)}"
        )
    return OwnImages(held.images, held.labels.astype(np.int64), fit)


def part_fits(table: pa.Table) -> dict:
    metadata = table.schema.metadata or {}
    return json.loads(metadata.get(FITS_KEY, b"{}"))


def fit_summary(figures: dict[str, dict]) -> str:
    """One log line of what the keyless fits reached: agreement on held-out images, and the
    share of the key found (scored afterwards)."""
    parts = []
    for name, fit in figures.items():
        shown = [f"{k} {v:.3f}" for k, v in fit.items() if isinstance(v, float)]
        parts.append(f"{name} ({', '.join(shown)})" if shown else name)
    return "; ".join(parts) or "nothing to fit"


def trained_record(row: dict) -> dict:
    """A row's run record, which must be the one its checkpoint was written with: a
    checkpoint replaced since ``training.parquet`` was written is refused, not evaluated as
    if it were the recorded run."""
    record = json.loads(row["record"])
    written = checkpoint_record(row["checkpoint"])
    if written.get("run_id") != row["run_id"]:
        raise LieRayError(
            f"checkpoint {row['checkpoint']} of {row['scenario']} holds run "
            f"{str(written.get('run_id'))[:12]}, but training.parquet records "
            f"{row['run_id'][:12]}: train again into that --runs directory"
        )
    return record


def check_keys(key_path: str | Path | None, records: list[dict]) -> None:
    """The key can serve every encrypted scenario's policy, at its own key-batch size (the
    key file is read once per distinct policy, not once per scenario)."""
    specs = {policy_spec(r["scenario"]) for r in records if r["scenario"]["encrypted"]}
    for spec in specs:
        load_key_for_policies(key_path, [spec.name], spec.key_batch_size)


def evaluation_digest(record: dict, plain_run: str | None, evaluation: dict) -> str:
    """What a scenario's evaluation depends on (its run record, the Plain run the transfer
    attack uses, the evaluation's settings and data): a saved part is reused only when this
    matches. Holds no key material."""
    return provenance.digest(
        {
            "run_id": record["run_id"],
            "plain": plain_run,
            "settings": evaluation["settings"],  # test_limit included
            "data": evaluation["data"]["files"],
        }
    )


def finished_part(path: str, digest: str) -> bool:
    """Whether ``path`` holds this evaluation's part, its decided images included (a part an
    older lie_ray wrote without them is evaluated again)."""
    try:
        schema = storage.read_schema(path)
    except (OSError, pa.ArrowInvalid):
        return False  # unreadable: evaluate again (the file is replaced atomically)
    metadata = schema.metadata or {}
    return metadata.get(DIGEST_KEY) == digest.encode() and "image" in schema.names


def with_training_columns(results: pa.Table, trained: list[dict]) -> pa.Table:
    """Add each scenario's ``transform`` (``none`` for plain images), and the ``run_id`` and
    ``key_fingerprint`` of the training run its rows come from."""
    by_name = {r["scenario"]: json.loads(r["record"]) for r in trained}
    names = results.column("scenario").to_pylist()

    def transform(name: str) -> str:
        definition = by_name[name]["scenario"]
        return definition["transform"]["name"] if definition["transform"] else "none"

    results = results.add_column(
        1, "transform", pa.array([transform(n) for n in names], pa.string())
    )
    results = results.append_column(
        "run_id", pa.array([by_name[n]["run_id"] for n in names], pa.string())
    )
    return results.append_column(
        "key_fingerprint",
        pa.array([by_name[n]["key_fingerprint"] or "" for n in names], pa.string()),
    )


def write_gallery(
    trained: list[dict], key_path: str | None, test, settings: EvalSettings, path: Path
) -> None:
    """The paper's Fig. 1 and Fig. 4: plain, encrypted, adversarial (BPDA-PGD at eps 0.1) and
    encrypted adversarial images for the first encrypted scenario, each row named and each
    image captioned with its true class and what the scenario's network predicts for it.
    The adversarial image is what the pipeline receives (8-bit, within the effective ball,
    ``deployed``), and the prediction is on that image."""
    row = next((r for r in trained if r["encrypted"]), None)
    if row is None:
        return
    defender = load_defender(row["checkpoint"], key_path)
    shown = test.head(8)
    plain = torch.from_numpy(shown.images).permute(0, 3, 1, 2).float().contiguous() / 255
    labels = torch.from_numpy(shown.labels).long()
    eps = effective_epsilon(PAPER_EPSILON)
    adversarial = PGD(
        defender.classifier(shown.ids, "bpda-both"),
        eps,
        settings.step_size(eps),
        settings.pgd_steps,
        seed=salted(settings.attacker_seed, "gallery"),
    )(plain, labels, ids=shown.ids)
    adversarial = deployed(adversarial, plain, eps)
    with torch.no_grad():
        images = [
            plain,
            defender.encrypt(plain, shown.ids),
            adversarial,
            defender.encrypt(adversarial, shown.ids),
        ]
    predicted = [defender.predict(x, shown.ids).tolist() for x in (plain, adversarial)]
    as_bytes = [
        torch.floor(x * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy() for x in images
    ]

    def name(k):
        return CIFAR_CLASSES[k] if 0 <= k < len(CIFAR_CLASSES) else str(k)

    captions = [
        [f"true {name(t)}\npred {name(p)}" for t, p in zip(labels.tolist(), guesses)]
        for guesses in (predicted[0], predicted[0], predicted[1], predicted[1])
    ]
    save_grid(
        as_bytes,
        path,
        row_labels=[
            f"plain\n({row['scenario']})",
            "encrypted\n(what it sees)",
            f"adversarial\n(BPDA-PGD, eps {PAPER_EPSILON:g})",
            "encrypted\nadversarial",
        ],
        captions=captions,
    )
