"""The GPU path: what makes a CUDA device fast, kept off on CPUs where it does not help.

* ``channels_last``: cuDNN's convolutions run NHWC natively (tensor cores in bfloat16); NCHW
  costs a transpose per layer. CIFAR batches arrive NHWC from Ray Data, so their permuted view
  already has that layout and needs no copy.
* ``cudnn.benchmark``: fixed 32x32 inputs, so the fastest convolution algorithm is found once.
* pinned host memory and non-blocking copies: the next batch's upload overlaps the GPU's work.
* ``torch.compile`` (opt-in, ``--compile``): fuses the network's element-wise work; compiling
  takes minutes, paid back over the ``paper`` preset's 100 epochs, not over a smoke run.
  ``Module.compile`` compiles in place, so checkpoints keep their plain state-dict keys.
"""

from __future__ import annotations

import numpy as np
import torch


def configure(device: torch.device) -> None:
    """Process-wide settings for ``device``; call once per worker or actor."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def prepare_network(
    model: torch.nn.Module, device: torch.device, compile: bool = False
) -> torch.nn.Module:
    """``model`` on ``device``, in channels-last layout on GPUs, compiled when asked."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if compile:
        model.compile()
    return model


def network_device(network: torch.nn.Module) -> torch.device:
    """Where ``network`` lives (its first parameter, else buffer; CPU for an empty one)."""
    tensor = next(iter(network.parameters()), None)
    if tensor is None:
        tensor = next(iter(network.buffers()), torch.zeros(0))
    return tensor.device


def to_device(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A host array on ``device``. Copied first: Ray Data hands over read-only views, which
    torch warns about. On GPUs the copy lands in pinned memory, so the upload is asynchronous."""
    tensor = torch.from_numpy(np.array(array))
    if device.type != "cuda":
        return tensor
    return tensor.pin_memory().to(device, non_blocking=True)


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (or float, for FFX) NHWC images as float NCHW in [0, 1] on ``device``: contiguous
    on CPUs, channels-last on GPUs (the permuted NHWC batch already is, so no copy)."""
    tensor = to_device(images, device).permute(0, 3, 1, 2).float()
    if images.dtype == np.uint8:  # bytes; a float transform (FFX) is fed as it is
        tensor = tensor.div_(255)
    layout = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return tensor.contiguous(memory_format=layout)
