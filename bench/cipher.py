"""Cipher throughput, and the cipher's share of one PGD step.

    python bench/cipher.py [--images 10000] [--batch 128] [--repeats 3]

Prints images/s (best of --repeats, one thread) for:
  * a straightforward vectorised NumPy rendering of the reference algorithm (the yardstick),
  * lie_ray's NumPy path (uint8 NHWC) and its torch paths (uint8 and float NCHW, CPU),
  * the torch kernel that runs on GPUs, here timed on the CPU for comparison only;
then the cost of the BPDA cipher (forward + backward) inside one PGD step next to a CIFAR
ResNet18 forward + backward on the same batch. Target: NumPy path >= 5x the reference rendering.
Then one line per transform of the family (``lie_ray.transforms``, each at its paper's first
block size): NumPy and torch encrypt throughput, and its attack forward + backward
(``with_grad``) as a share of the ResNet18 step. Target: under 1% of the network.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from lie_ray.cipher import cipher_with_grad, from_permutation  # noqa: E402
from lie_ray.models import ResNet18  # noqa: E402
from lie_ray.transforms.nibble.kernels_torch import device_tables, gather_bytes_torch  # noqa: E402
from lie_ray.transforms.nibble.reference import reference_encrypt  # noqa: E402


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up: builds tables, allocators
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        timings.append(time.perf_counter() - start)
    return min(timings)


def throughput(args, cipher, perm) -> None:
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()
    nchw_float = nchw.float() / 255
    tables = device_tables(cipher, "encrypt", 32, 32, torch.device("cpu"))
    flat = nchw.reshape(len(nchw), -1)
    cases = {
        "reference rendering (NumPy)": lambda: reference_encrypt(nhwc, perm, 4),
        "lie_ray NumPy uint8 NHWC": lambda: cipher.encrypt(nhwc),
        "lie_ray NumPy decrypt": lambda: cipher.decrypt(nhwc),
        "lie_ray torch uint8 NCHW (CPU)": lambda: cipher.encrypt(nchw),
        "lie_ray torch float NCHW (CPU)": lambda: cipher.encrypt(nchw_float),
        "torch GPU kernel, run on CPU": lambda: gather_bytes_torch(flat, tables),
    }
    print(f"encrypt throughput, {args.images} CIFAR images, 1 thread, best of {args.repeats}")
    reference = None
    for name, fn in cases.items():
        seconds = best_time(fn, args.repeats)
        rate = args.images / seconds
        reference = reference or rate
        print(f"  {name:34s} {rate:12,.0f} img/s   {rate / reference:5.2f}x reference")


def pgd_step_share(args, cipher) -> None:
    torch.manual_seed(0)
    model = ResNet18().eval()
    images = torch.rand(args.batch, 3, 32, 32)
    labels = torch.randint(0, 10, (args.batch,))
    loss_fn = torch.nn.CrossEntropyLoss()

    def network_only():
        x = images.clone().requires_grad_(True)
        loss_fn(model(x), labels).backward()

    def cipher_only():
        x = images.clone().requires_grad_(True)
        cipher_with_grad(cipher, x, "bpda-both").sum().backward()

    net = best_time(network_only, max(1, args.repeats - 1))
    enc = best_time(cipher_only, args.repeats)
    print(f"one PGD step, batch {args.batch}, {torch.get_num_threads()} thread(s):")
    print(f"  ResNet18 forward+backward   {net * 1000:9.1f} ms")
    print(
        f"  BPDA cipher fwd+bwd         {enc * 1000:9.1f} ms   ({100 * enc / net:.2f}% of the "
        "network)"
    )
    return net


def family(args, network_seconds: float) -> None:
    """Every transform: NumPy / torch encrypt throughput and the attack's fwd+bwd share."""
    from lie_ray import transforms
    from lie_ray.keys import generate_key

    key = generate_key(4)
    rng = np.random.default_rng(0)
    nhwc = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    nchw = torch.from_numpy(nhwc).permute(0, 3, 1, 2).contiguous()
    as_float = nchw.float() / 255
    step = as_float[: args.batch]
    print(
        f"transform family: encrypt img/s ({args.images} images), attack fwd+bwd at batch "
        f"{args.batch} vs ResNet18 fwd+bwd {network_seconds * 1000:.1f} ms"
    )
    for name in transforms.names():
        for variant in transforms.REGISTRY[name].variants:
            t = transforms.build(name, key, variant=variant)

            def attack_step():
                x = step.clone().requires_grad_(True)
                t.with_grad(x).sum().backward()

            rates = [
                args.images / best_time(fn, args.repeats)
                for fn in (
                    lambda: t.encrypt(nhwc),
                    lambda: t.encrypt(nchw),
                    lambda: t.encrypt(as_float),
                )
            ]
            seconds = best_time(attack_step, args.repeats)
            print(
                f"  {name:7s} {variant:9s} M={t.block_size}  numpy {rates[0]:10,.0f}  "
                f"torch uint8 {rates[1]:10,.0f}  torch float {rates[2]:10,.0f}  "
                f"fwd+bwd {seconds * 1000:6.2f} ms ({100 * seconds / network_seconds:.2f}%, "
                f"{t.gradient})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    perm = np.random.default_rng(1).permutation(96)
    cipher = from_permutation(perm, block_size=4)
    throughput(args, cipher, perm)
    family(args, pgd_step_share(args, cipher))


if __name__ == "__main__":
    main()
