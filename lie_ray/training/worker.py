"""``train_func(config)``: what every Ray Train worker runs for one scenario.

Per epoch: train on this worker's shard (DDP averages the gradients), measure clean test error
on its test shard, sum the counts over workers, then report to Ray Train with a checkpoint.
Every rank reports the same number of times (a report is a barrier); rank 0 attaches the
checkpoint. A checkpoint holds the model, the optimiser and the epoch, plus metadata naming the
key by FINGERPRINT only.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import ray
import ray.train
import ray.train.torch
import torch
import torch.distributed as dist
import torch.nn.functional as F

from lie_ray.attacks import PGD
from lie_ray.infra.checkpoints import META_FILE, STATE_FILE
from lie_ray.infra.console import quiet_worker
from lie_ray.keys import load_key
from lie_ray.keys.policies import PolicySpec
from lie_ray.models import build_model
from lie_ray.models.device import configure, images_to_device, prepare_network, to_device
from lie_ray.scenarios import Scenario
from lie_ray.training.settings import ADV_ATTACKS, TrainSettings
from lie_ray.transforms import transform_class


def train_func(config: dict) -> None:
    if config.get("quiet"):
        quiet_worker()
    scenario, settings = Scenario(**config["scenario"]), TrainSettings(**config["settings"])
    torch.set_num_threads(settings.torch_threads)
    torch.manual_seed(settings.seed + ray.train.get_context().get_world_rank())
    device = ray.train.torch.get_device()
    configure(device)
    model = ray.train.torch.prepare_model(
        prepare_network(build_model(**model_config(scenario, settings)), device, settings.compile)
    )
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=settings.lr,
        momentum=settings.momentum,
        weight_decay=settings.weight_decay,
    )
    start_epoch = restore(model, optimizer, config.get("resume_from"))
    encrypt = worker_side_encryption(scenario, settings, config.get("key_path"))
    train_shard = ray.train.get_dataset_shard("train")
    test_shard = ray.train.get_dataset_shard("test")
    per_worker_batch = settings.batch_size // ray.train.get_context().get_world_size()

    for epoch in range(start_epoch, settings.epochs):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr if epoch < settings.lr_drop_epoch else settings.lr_after_drop
        started_at, started = time.time(), time.perf_counter()
        loss_sum, wrong, seen = train_epoch(
            model, optimizer, scenario, encrypt, train_shard, per_worker_batch, device, epoch
        )
        test_wrong, test_seen = (
            count_errors(unwrap(model), test_shard, per_worker_batch, device)
            if is_rank_zero()
            else (0, 0)
        )
        totals = all_reduce([loss_sum, wrong, seen, test_wrong, test_seen], device)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": totals[0] / max(totals[2], 1),
            "train_error": totals[1] / max(totals[2], 1),
            "test_error": totals[3] / max(totals[4], 1),
            "train_images": int(totals[2]),
            "test_images": int(totals[4]),
            "resumed_from_epoch": start_epoch,
            "key_fingerprint": config.get("key_fingerprint") or "",
            "node": ray.get_runtime_context().get_node_id(),
            # the epoch's training and test passes on every rank, checkpoint excluded
            "epoch_seconds": time.perf_counter() - started,
            "epoch_started_at": started_at,
            "run_id": config["run_record"]["run_id"],
            "device": device_name(device),
        }
        report(
            model,
            optimizer,
            metrics,
            scenario,
            model_config(scenario, settings),
            transform_meta(scenario, settings),
            config["run_record"],
        )


def train_epoch(model, optimizer, scenario, encrypt, shard, batch_size, device, epoch):
    """One epoch; the loss and error are of what was trained on (the adversarial images of an
    adversarial scenario), as the paper's train column reports them."""
    loss_sum, wrong, seen = 0.0, 0, 0
    for step, batch in enumerate(read_batches(shard, batch_size)):
        images, labels = to_tensors(batch, device)
        keyed = encrypt and (lambda plain, ids, step=step: encrypt(plain, ids, epoch, step))
        if scenario.adversarial:
            images = adversarial_inputs(model, scenario, keyed, images, labels, batch["id"])
        elif keyed:  # the plain batch of a policy that keys each mini-batch on the worker
            with torch.no_grad():
                images = keyed(images, batch["id"])
        model.train()
        optimizer.zero_grad(set_to_none=True)
        with autocast(device):
            logits = model(images)
            loss = F.cross_entropy(logits, labels)
        loss.backward()
        optimizer.step()
        loss_sum += loss.item() * len(labels)
        wrong += (logits.argmax(1) != labels).sum().item()
        seen += len(labels)
    return loss_sum, wrong, seen


def read_batches(shard, batch_size: int):
    """One epoch of a worker's training shard, in the batches it trains on."""
    return shard.iter_batches(
        batch_size=batch_size, batch_format="numpy", local_shuffle_buffer_size=4 * batch_size
    )


def adversarial_inputs(model, scenario, encrypt, images, labels, ids):
    """PGD on the PLAIN image (BN in eval mode, so the attack does not move running stats);
    the model then trains on what it would see: the encrypted adversarial image."""

    def classifier(plain):
        return model(encrypt(plain, ids) if encrypt else plain)

    model.eval()
    adversarial = PGD(classifier, scenario.eps, scenario.step_size, scenario.steps)(images, labels)
    with torch.no_grad():
        return encrypt(adversarial, ids) if encrypt else adversarial


def count_errors(model, shard, batch_size, device) -> tuple[int, int]:
    """Clean errors over a whole dataset iterator. Pass the UNWRAPPED model: a DDP forward is a
    collective, and only rank 0 evaluates."""
    model.eval()
    wrong, seen = 0, 0
    with torch.no_grad():
        for batch in shard.iter_batches(batch_size=batch_size, batch_format="numpy"):
            images, labels = to_tensors(batch, device)
            with autocast(device):
                wrong += (model(images).argmax(1) != labels).sum().item()
            seen += len(labels)
    return wrong, seen


def worker_side_encryption(scenario: Scenario, settings: TrainSettings, key_path: str | None):
    """``encrypt(plain, ids, epoch, step)`` where the worker encrypts: the policy's autograd
    transform (its true gradient, or BPDA where it has none). Under ``per-minibatch`` every
    mini-batch gets the fresh key of its (epoch, step); under the other policies each row is
    keyed by its id exactly as the Ray Data path keys it. None when Ray Data encrypts (or the
    scenario is plain)."""
    if not scenario.encrypted:
        return None
    policy = PolicySpec(scenario.key_policy, settings.key_batch_size).build()
    if not (scenario.adversarial or policy.encrypts_on_worker):
        return None
    # Loaded here, in the worker: the key never rides in a config.
    key = scenario.transform_spec().keyed(load_key(key_path))
    backward = ADV_ATTACKS[settings.adv_attack]  # only adversarial training differentiates
    if policy.encrypts_on_worker:
        return lambda plain, ids, epoch, step: key.transform(
            policy.step_label(epoch, step)
        ).with_grad(plain, backward)
    return lambda plain, ids, epoch, step: policy.encrypt_torch(
        key, plain, np.asarray(ids), "train", backward
    )


def to_tensors(batch: dict, device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        images_to_device(batch["image"], device),
        to_device(np.asarray(batch["label"], dtype=np.int64), device),
    )


def autocast(device: torch.device):
    """bfloat16 mixed precision on GPUs, full precision on CPUs."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )


def all_reduce(values: list[float], device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor)
    return tensor.tolist()


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def restore(model, optimizer, resume_from: str | None) -> int:
    """Load the furthest checkpoint of this run, Ray Train's own or ``resume_from`` (the newest
    the trial found in the run's storage, which Train's controller may not have recorded
    before a signal stopped it); return the epoch to start from."""
    candidates = [
        checkpoint
        for checkpoint in (
            ray.train.get_checkpoint(),
            resume_from and ray.train.Checkpoint(resume_from),
        )
        if checkpoint
    ]
    if not candidates:
        return 0
    with max(candidates, key=checkpoint_epoch).as_directory() as directory:
        state = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def checkpoint_epoch(checkpoint: ray.train.Checkpoint) -> int:
    """From meta.json alone, so only the chosen checkpoint's state is loaded (or, from cloud
    storage, downloaded)."""
    with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{META_FILE}") as stream:
        return int(json.loads(stream.read())["epoch"])


def model_config(scenario: Scenario, settings: TrainSettings) -> dict:
    """What ``build_model`` needs to rebuild this network from a checkpoint: the adaptation
    network sized to the transform's blocks where its reference uses one."""
    spec = scenario.transform_spec().resolved(settings.block_size)
    return {
        "encrypted": scenario.encrypted,
        "width": settings.width,
        "block_size": spec.block_size,
        "adaptation_channels": settings.adaptation_channels,
        "adaptation": transform_class(spec.name).adaptation,
    }


def transform_meta(scenario: Scenario, settings: TrainSettings) -> dict:
    """The scenario's transform, for checkpoint metadata (names and numbers, no key)."""
    spec = scenario.transform_spec().resolved(settings.block_size)
    return {"name": spec.name, "block_size": spec.block_size, "variant": spec.variant}


def is_rank_zero() -> bool:
    return ray.train.get_context().get_world_rank() == 0


def device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:<name of the GPU>``: the device the run record names."""
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return device.type


def report(
    model,
    optimizer,
    metrics: dict,
    scenario: Scenario,
    model_kwargs: dict,
    transform: dict,
    record: dict,
) -> None:
    if not is_rank_zero():
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as directory:
        torch.save(
            {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": metrics["epoch"],
            },
            os.path.join(directory, STATE_FILE),
        )
        meta = {
            "scenario": scenario.name,
            "model": model_kwargs,
            "transform": transform,
            "record": {**record, "device": metrics["device"]},
            **metrics,
        }
        Path(directory, META_FILE).write_text(json.dumps(meta, indent=2))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
