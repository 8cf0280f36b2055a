"""Known-plaintext key recovery on real CIFAR-10 test images, over many keys.

    python bench/privacy.py [--transform le] [--block-size 4] [--keys 100] [--max-k 16]

For each of ``--keys`` keys derived from a fresh master key, feeds (plain, encrypted) pairs of
randomly drawn real test images one at a time until the key is determined; prints the
distribution of that k, how many recovered keys equal the true one, and the SSIM/PSNR of the
whole test set decrypted with keys recovered from the largest k seen.
"""

from __future__ import annotations

import argparse
import collections
import os
import time

import numpy as np

from lie_ray.data.cifar import DEFAULT_DATA_DIR, load_split
from lie_ray.keys import generate_key
from lie_ray.privacy import known_plaintext, targets
from lie_ray.privacy.scoring import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transform", default="le")
    parser.add_argument("--block-size", type=int, default=4)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--max-k", type=int, default=16)
    parser.add_argument("--data", default=os.environ.get("LIE_RAY_DATA", DEFAULT_DATA_DIR))
    args = parser.parse_args()
    images = load_split(args.data, "test").images
    master = generate_key(args.block_size)
    started = time.perf_counter()
    ks, exact = [], 0
    for i in range(args.keys):  # one key per iteration: the statistic is over keys
        truth = targets.build(args.transform, master, args.block_size, f"bench/{i}")
        pairs = images[np.random.default_rng(i).permutation(len(images))[: args.max_k]]
        k, arrays = known_plaintext.smallest_k(
            args.transform, pairs, truth.encrypt(pairs), args.block_size
        )
        ks.append(k)
        exact += known_plaintext.equivalent(args.transform, arrays, truth)
    seconds = time.perf_counter() - started
    counts = collections.Counter("none" if k is None else k for k in ks)
    print(
        f"{args.transform} M={args.block_size}: {args.keys} keys, k histogram "
        f"{dict(sorted(counts.items(), key=str))}, exact keys {exact}/{args.keys}, "
        f"{seconds / args.keys * 1000:.1f} ms per key"
    )
    worst = max((k for k in ks if k is not None), default=args.max_k)
    truth = targets.build(args.transform, master, args.block_size, "fixed")
    encrypted = truth.encrypt(images)
    _, arrays = known_plaintext.smallest_k(
        args.transform, images[:worst], encrypted[:worst], args.block_size
    )
    decrypted = targets.from_arrays(args.transform, arrays, args.block_size).decrypt(encrypted)
    values = score(decrypted[worst:], images[worst:])
    print(
        f"test set ({values['n']} images) decrypted with the key recovered from {worst} "
        f"pair(s): SSIM {values['ssim']:.4f} [{values['ssim_low']:.4f}, "
        f"{values['ssim_high']:.4f}], PSNR {values['psnr']:.1f} dB"
    )


if __name__ == "__main__":
    main()
