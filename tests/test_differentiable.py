"""The cipher inside autograd: true forward always, the chosen backward."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from literal_cipher import literal_encrypt_image

from lie_ray.cipher import cipher_with_grad, from_permutation, smooth_surrogate


@pytest.fixture
def cipher():
    return from_permutation(PERMUTATION, block_size=2)


@pytest.fixture
def images():
    levels = torch.randint(0, 256, (2, 3, 4, 6), generator=torch.Generator().manual_seed(1))
    return (levels.double() / 255).requires_grad_(True)


PERMUTATION = np.random.default_rng(0).permutation(24)  # the cipher fixture's key


@pytest.mark.parametrize("mode", ["none", "bpda-high", "bpda-both", "identity"])
def test_forward_is_the_true_cipher(cipher, images, mode):
    # Against the paper's steps rendered loop by loop (tests/literal_cipher.py), not against
    # lie_ray's own encrypt: every backward mode must leave the forward bit-exact.
    out = cipher_with_grad(cipher, images, backward=mode)
    levels = torch.round(images.detach() * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    expected = np.stack([literal_encrypt_image(image, list(PERMUTATION), 2) for image in levels])
    got = torch.round(out.detach() * 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    assert np.array_equal(got, expected)


def test_plain_autograd_gradient_is_zero(cipher, images):
    out = cipher_with_grad(cipher, images, backward="none")
    (grad,) = torch.autograd.grad((out * torch.randn_like(out)).sum(), images)
    assert torch.count_nonzero(grad) == 0  # the obfuscated gradient the paper's attack met


@pytest.mark.parametrize("mode", ["bpda-high", "bpda-both"])
def test_surrogate_equals_true_cipher_at_anchor(cipher, images, mode):
    anchor = images.detach()
    np.testing.assert_allclose(
        smooth_surrogate(cipher, anchor, anchor, mode).numpy(),
        cipher.encrypt(anchor).numpy(),
        atol=1e-12,
    )


@pytest.mark.parametrize("mode", ["bpda-high", "bpda-both"])
def test_bpda_jacobian_matches_finite_differences_of_surrogate(cipher, images, mode):
    anchor = images.detach()
    out = cipher_with_grad(cipher, images, backward=mode)
    n_out, n_in = out.numel(), images.numel()
    backward_jacobian = torch.stack(
        [
            torch.autograd.grad(out.reshape(-1)[k], images, retain_graph=True)[0].reshape(-1)
            for k in range(n_out)
        ]
    )

    step = 1e-4
    fd_jacobian = torch.empty(n_out, n_in, dtype=torch.float64)
    for j in range(n_in):
        bump = torch.zeros(n_in, dtype=torch.float64)
        bump[j] = step
        bump = bump.reshape(images.shape)
        plus = smooth_surrogate(cipher, anchor + bump, anchor, mode)
        minus = smooth_surrogate(cipher, anchor - bump, anchor, mode)
        fd_jacobian[:, j] = ((plus - minus) / (2 * step)).reshape(-1)

    np.testing.assert_allclose(backward_jacobian.numpy(), fd_jacobian.numpy(), atol=1e-6)
    # Each input pixel reaches exactly the output bytes its nibbles land in: 1 or 2 per column.
    per_input = torch.count_nonzero(backward_jacobian, dim=0)
    assert per_input.min() >= 1 and per_input.max() <= (1 if mode == "bpda-high" else 2)


def test_surrogates_differ_and_are_nonzero(cipher, images):
    weights = torch.randn(
        images.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(2)
    )
    grads = {}
    for mode in ("bpda-high", "bpda-both"):
        out = cipher_with_grad(cipher, images, backward=mode)
        grads[mode] = torch.autograd.grad((out * weights).sum(), images)[0]
        assert torch.count_nonzero(grads[mode]) > 0
    assert not torch.allclose(grads["bpda-high"], grads["bpda-both"])


def test_unknown_backward_mode_is_rejected(cipher, images):
    from lie_ray.errors import LieRayError

    with pytest.raises(LieRayError, match="unknown backward mode 'bpda'"):
        cipher_with_grad(cipher, images, backward="bpda")
