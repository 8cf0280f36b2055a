"""The GPU path's switches (``lie_ray.models.device``) on the CPU this suite runs on: off where
they do not help, and ``--compile`` leaving checkpoints' state-dict keys as they were."""

from __future__ import annotations

import numpy as np
import torch

from lie_ray.models import build_model
from lie_ray.models.device import images_to_device, prepare_network, to_device

CPU = torch.device("cpu")


def test_cpu_batches_are_plain_contiguous_floats_in_unit_range():
    images = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    images.setflags(write=False)  # as Ray Data hands them over
    tensor = images_to_device(images, CPU)
    assert tensor.shape == (4, 3, 32, 32) and tensor.dtype == torch.float32
    assert tensor.is_contiguous() and not tensor.is_pinned()
    np.testing.assert_array_equal(
        tensor.mul(255).round().byte().permute(0, 2, 3, 1).numpy(), images
    )
    floats = images.astype(np.float32) / 255  # FFX's float ciphertext passes unscaled
    assert torch.equal(images_to_device(floats, CPU), tensor)
    assert to_device(np.arange(3), CPU).tolist() == [0, 1, 2]


def test_compile_is_opt_in_and_keeps_state_dict_keys():
    model = build_model(False, width=4)
    keys = list(model.state_dict())
    plain = prepare_network(model, CPU)
    assert plain._compiled_call_impl is None
    assert next(plain.parameters()).is_contiguous()  # no channels-last on CPUs
    compiled = prepare_network(build_model(False, width=4), CPU, compile=True)
    assert compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == keys
