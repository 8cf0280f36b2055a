"""Training: DDP correctness, both encryption paths agreeing, resume, and no key on disk.

One small five-scenario run (a slice of the real data, one epoch, a narrow network) is shared
by the tests below it; it exercises exactly the code path of ``lie-ray train --preset smoke``.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray.cloudpickle
import ray.train
import ray.train.torch
import torch
import torch.nn.functional as F
from conftest import TRAIN_SLICE
from ray.train.torch import TorchTrainer

from lie_ray.data.cifar import load_split
from lie_ray.data.dataset import sorted_by_id, to_ray_dataset
from lie_ray.encryption.run import encrypt_dataset
from lie_ray.keys import generate_key, load_key, save_key
from lie_ray.keys.policies import PolicySpec
from lie_ray.models import build_model
from lie_ray.scenarios import PAPER_SCENARIOS
from lie_ray.training.augment import random_crop_flip
from lie_ray.training.run import run_training
from lie_ray.training.settings import get_preset
from lie_ray.transforms import TransformSpec

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers can't import tests/


# ----------------------------------------------------------------------------- DDP gradients
def fixed_batch():
    generator = torch.Generator().manual_seed(0)
    return torch.rand(8, 3, 32, 32, generator=generator), torch.randint(
        0, 10, (8,), generator=generator
    )


def fixed_model():
    torch.manual_seed(0)
    # Eval mode: BatchNorm uses running statistics, so the loss is a plain per-example mean and
    # DDP's averaged gradient over equal halves must equal the full-batch gradient.
    return build_model(encrypted=True, width=4, adaptation_channels=8).eval()


def flat_grad(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def ddp_gradient_worker(config):
    model = ray.train.torch.prepare_model(fixed_model())
    model.eval()
    images, labels = fixed_batch()
    rank, size = ray.train.get_context().get_world_rank(), ray.train.get_context().get_world_size()
    shard = slice(rank * len(labels) // size, (rank + 1) * len(labels) // size)
    F.cross_entropy(model(images[shard]), labels[shard]).backward()
    if rank == 0:
        torch.save(
            {"grad": flat_grad(model.module), "wrapped": type(model).__name__}, config["out"]
        )
    ray.train.report({"done": 1})


def test_ddp_gradients_over_two_workers_equal_single_process(ray_cluster, tmp_path):
    out = tmp_path / "ddp.pt"
    TorchTrainer(
        ddp_gradient_worker,
        train_loop_config={"out": str(out)},
        scaling_config=ray.train.ScalingConfig(num_workers=2),
        run_config=ray.train.RunConfig(storage_path=str(tmp_path), name="ddp"),
    ).fit()
    result = torch.load(out)
    assert result["wrapped"] == "DistributedDataParallel"
    model = fixed_model()
    images, labels = fixed_batch()
    F.cross_entropy(model(images), labels).backward()
    np.testing.assert_allclose(
        result["grad"].numpy(), flat_grad(model).numpy(), rtol=1e-4, atol=1e-6
    )


# ------------------------------------------------------------------------- augmentation
def test_crop_and_flip_match_a_literal_per_image_rendering(cifar_dir):
    images = load_split(cifar_dir, "test").images[:64]
    crops = random_crop_flip(images, np.random.default_rng(3))
    rng = np.random.default_rng(3)  # the same draws, in the same order
    rows, cols, flips = rng.integers(0, 9, 64), rng.integers(0, 9, 64), rng.random(64) < 0.5
    padded = np.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
    for i in range(64):
        expected = padded[i, rows[i] : rows[i] + 32, cols[i] : cols[i] + 32]
        np.testing.assert_array_equal(crops[i], expected[:, ::-1] if flips[i] else expected)
    assert crops.flags.c_contiguous and 0 < flips.sum() < 64 and (rows != 4).any()


# --------------------------------------------------------------- the two encryption paths
@pytest.mark.parametrize("policy_name,actors", [("fixed", 2), ("id-group", 2), ("id-group", None)])
def test_ray_data_and_worker_encryption_agree(
    ray_cluster, cifar_dir, tmp_path, policy_name, actors
):
    """Actors (the encrypt job) and tasks (the per-epoch train pipeline) alike."""
    key_path = save_key(generate_key(), tmp_path / "key.json")
    split = load_split(cifar_dir, "train").head(300)
    spec = PolicySpec(policy_name, key_batch_size=64)
    rows = sorted_by_id(
        encrypt_dataset(
            to_ray_dataset(split, 100), key_path, spec, "train", actors=actors
        ).take_batch(1000, batch_format="numpy")
    )
    plain = torch.from_numpy(split.images).permute(0, 3, 1, 2).float() / 255
    on_worker = spec.build().encrypt_torch(
        TransformSpec().keyed(load_key(key_path)), plain, split.ids, "train"
    )
    as_bytes = torch.round(on_worker * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(as_bytes, rows["image"])


# ------------------------------------------------------------- a real five-scenario run
# (the ``smoke_sweep`` fixture in conftest.py: the sweep on a slice, once per session)


def test_smoke_slice_trains_all_five_scenarios(smoke_sweep):
    table = pq.read_table(smoke_sweep["out"] / "training.parquet").to_pylist()
    assert [row["scenario"] for row in table] == list(PAPER_SCENARIOS)
    fingerprint = load_key(smoke_sweep["key_path"]).fingerprint
    for row in table:
        assert row["epochs"] == 1 and row["train_images"] == 256 and row["test_images"] == 128
        assert 0 <= row["train_error"] <= 1 and 0 <= row["test_error"] <= 1
        assert np.isfinite(row["train_loss"])
        assert row["key_fingerprint"] == ("" if row["scenario"] == "Plain" else fingerprint)
        meta = json.loads((Path(row["checkpoint"]) / "meta.json").read_text())
        assert meta["scenario"] == row["scenario"] and meta["epoch"] == 1
        assert (Path(row["checkpoint"]) / "state.pt").is_file()
    assert "finished training Encrypted-Adv-DK" in smoke_sweep["output"]


@pytest.mark.parametrize(
    "train_recorded_it", [True, False], ids=["train-recorded-it", "only-on-disk"]
)
def test_running_again_resumes_from_the_last_checkpoint(
    ray_cluster, smoke_sweep, cifar_dir, tmp_path, train_recorded_it
):
    # A copy of the finished 1-epoch run, asked for 2 epochs: as if it had been stopped after
    # epoch 1's checkpoint. (A copy, so the session's run stays as other tests expect it.)
    # Without Ray Train's checkpoint-manager snapshot, as when a signal stops the controller
    # before it records the epoch's report, the checkpoint on disk is still found.
    shutil.copytree(smoke_sweep["out"] / "ray", tmp_path / "ray")
    if not train_recorded_it:
        snapshots = list((tmp_path / "ray").rglob("checkpoint_manager_snapshot.json"))
        assert snapshots, "the run layout changed: Ray Train's snapshot is not where it was"
        for snapshot in snapshots:
            snapshot.unlink()
    settings = get_preset("smoke").replace(**{**TRAIN_SLICE, "epochs": 2})
    scenario = PAPER_SCENARIOS["Encrypted"]
    table = run_training(
        [scenario], settings, cifar_dir, tmp_path, smoke_sweep["key_path"]
    ).to_pylist()
    assert table[0]["epochs"] == 2
    assert table[0]["resumed_from_epoch"] == 1  # epoch 1 came from the checkpoint, not retrained


# ----------------------------------------------------------------------------- checkpoint scan
def write_checkpoint(run: Path, name: str, epoch: int, run_id: str, state: bool = True) -> None:
    directory = run / name
    directory.mkdir(parents=True)
    (directory / "meta.json").write_text(json.dumps({"epoch": epoch, "run_id": run_id}))
    if state:
        torch.save({"epoch": epoch}, directory / "state.pt")


def test_the_resume_scan_finds_the_newest_complete_checkpoint_of_this_run(tmp_path):
    from lie_ray.training.trial import finished_checkpoint, run_checkpoints

    run = tmp_path / "Plain-abc"

    def scan() -> list[tuple[str, dict]]:
        return run_checkpoints(str(run), "abc")

    assert scan() == []  # no run directory yet
    write_checkpoint(run, "checkpoint_2026-12-02_10-00-00.000001", 1, "abc")
    write_checkpoint(run, "checkpoint_2026-12-02_10-00-09.000001", 3, "other")  # another run
    write_checkpoint(run, "checkpoint_2026-12-02_10-00-05.000001", 2, "abc", state=False)
    (run / "checkpoint_tmp_unfinished").mkdir()  # an upload cut short: no files at all
    assert scan()[-1][0] == str(run / "checkpoint_2026-12-02_10-00-00.000001")
    assert finished_checkpoint(scan(), 2) is None  # epoch 2 never finished writing
    write_checkpoint(run, "checkpoint_2026-12-02_10-00-07.000001", 2, "abc")
    assert scan()[-1][0] == str(run / "checkpoint_2026-12-02_10-00-07.000001")
    path, metrics = finished_checkpoint(scan(), 2)
    assert (Path(path).name, metrics) == (
        "checkpoint_2026-12-02_10-00-07.000001",
        {"epoch": 2, "run_id": "abc"},
    )
