"""Full-size CIFAR-10 stand-ins: generated images in the real "python version" file format.

The project's real data is a 5,438-image subset, and this machine has no internet, so how time
and memory grow to full CIFAR-10 (5 x 10,000 train + 10,000 test) can only be measured on
generated images. ``bench/scale.py`` writes them into a temporary directory; never commit them.
It lives in the package (``data/``), not beside the benches, because the tests and users run
it too (``python -m lie_ray.data.synthetic``), and it depends only on ``data.cifar``'s format.

    python -m lie_ray.data.synthetic OUT [--train 50000] [--test 10000] [--seed 0]

writes ``OUT/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``, which every
``--data`` option accepts. The files are byte-for-byte what the original Python 2 ``cPickle``
wrote (protocol 2, byte strings, ``numpy.core.multiarray`` arrays): ``load_split``, torchvision
and scripts that read with ``encoding="bytes"`` all see the layout they see in the real files.

Images are deterministic in the seed and cheap (about a second per 10,000, vectorised): each
class has its own colour and gradient direction, each image a random wave along it, a soft blob
and pixel noise. That is not CIFAR, but it has CIFAR's smooth structure, so compressed sizes
(Parquet shards) are of the real order rather than those of pure noise or flat colour.
"""

from __future__ import annotations

import argparse
import struct
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from lie_ray.data.cifar import DIRECTORY_NAME, IMAGE_SHAPE, SPLIT_FILES
from lie_ray.errors import LieRayError
from lie_ray.infra import atomic

LABEL_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
FULL_TRAIN, FULL_TEST = 50_000, 10_000
MAX_PER_FILE = 200_000  # a Python 2 BINSTRING holds < 2 GiB; this stays far below
_CHUNK = 1_000  # images generated at once: bounds the float temporaries to ~12 MB
_PIXELS = int(np.prod(IMAGE_SHAPE))
# Per class: a base colour (RGB) and a gradient direction, so classes differ in a learnable way.
_CLASS_COLOURS = np.array(
    [
        [120, 150, 200],
        [180, 60, 60],
        [110, 160, 90],
        [160, 120, 90],
        [140, 130, 80],
        [170, 140, 120],
        [80, 130, 70],
        [150, 110, 70],
        [70, 110, 170],
        [200, 190, 180],
    ],
    dtype=np.float32,
)
_CLASS_ANGLES = np.linspace(0, np.pi, len(LABEL_NAMES), endpoint=False, dtype=np.float32)


def generate_images(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 images, NCHW (the files' row layout), one per label; vectorised over the batch."""
    n = len(labels)
    axis = np.linspace(-0.5, 0.5, IMAGE_SHAPE[0], dtype=np.float32)
    y, x = axis[:, None], axis[None, :]
    angle = _CLASS_ANGLES[labels] + rng.normal(0, 0.25, n).astype(np.float32)
    ramp = np.cos(angle)[:, None, None] * x + np.sin(angle)[:, None, None] * y  # N, H, W
    freq = rng.uniform(0.5, 2.0, n).astype(np.float32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
    wave = np.cos(2 * np.pi * freq * ramp + phase)
    centre = rng.uniform(-0.3, 0.3, (n, 2)).astype(np.float32)
    radius = rng.uniform(0.08, 0.3, n).astype(np.float32)
    blob = np.exp(
        -((x - centre[:, 0, None, None]) ** 2 + (y - centre[:, 1, None, None]) ** 2)
        / (2 * radius[:, None, None] ** 2)
    )
    colour = _CLASS_COLOURS[labels] + rng.normal(0, 25, (n, 3)).astype(np.float32)
    contrast = rng.uniform(20, 60, (n, 3)).astype(np.float32)
    blob_colour = rng.uniform(0, 255, (n, 3)).astype(np.float32)
    image = (
        colour[:, :, None, None]
        + contrast[:, :, None, None] * wave[:, None]
        + 0.8 * (blob_colour - colour)[:, :, None, None] * blob[:, None]
    )
    image += rng.standard_normal(image.shape, dtype=np.float32) * 4
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def generate_batch(count: int, seed: int, file_index: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` rows of (3072 uint8 pixels) and int64 labels for one file, balanced over the
    classes; file ``file_index`` has its own random stream, so files do not repeat each other."""
    rng = np.random.default_rng([seed, file_index])
    labels = rng.permutation(np.arange(count) % len(LABEL_NAMES))
    data = np.empty((count, _PIXELS), dtype=np.uint8)
    for start in range(0, count, _CHUNK):
        rows = slice(start, start + _CHUNK)
        data[rows] = generate_images(labels[rows], rng).reshape(-1, _PIXELS)
    return data, labels.astype(np.int64)


def write_dataset(
    out: str | Path, train: int = FULL_TRAIN, test: int = FULL_TEST, seed: int = 0
) -> Path:
    """Write ``out/cifar-10-batches-py`` whole or not at all; return that directory.

    ``train`` images are spread over the five ``data_batch`` files as evenly as possible. An
    existing directory there is never replaced: it might be someone's real CIFAR-10."""
    _check_counts(train, test)
    target = Path(out).expanduser().resolve() / DIRECTORY_NAME
    if Path(out).exists() and not Path(out).is_dir():
        raise LieRayError(
            f"{out} is a file, not a directory: pass a directory to write {DIRECTORY_NAME} into"
        )
    if target.exists():
        raise LieRayError(
            f"{target} already exists: remove it or choose another output "
            "directory (existing data is never overwritten)"
        )
    names = SPLIT_FILES["train"] + SPLIT_FILES["test"]
    counts = _spread(train, len(SPLIT_FILES["train"])) + [test]
    with atomic.staged_directory(target) as staging:
        staging.chmod(0o755)  # a data directory, not a secret (mkdtemp made it 0700)
        for index, (name, count) in enumerate(zip(names, counts)):
            data, labels = generate_batch(count, seed, index)
            split = (
                "testing batch 1 of 1"
                if name == "test_batch"
                else f"training batch {index + 1} of {len(SPLIT_FILES['train'])}"
            )
            record = {
                "batch_label": split,
                "labels": labels.tolist(),
                "data": data,
                "filenames": [f"synthetic_{index}_{row:06d}.png" for row in range(count)],
            }
            with open(staging / name, "wb") as handle:
                write_py2_pickle(record, handle)
        meta = {
            "num_cases_per_batch": max(counts[:-1]),
            "label_names": LABEL_NAMES,
            "num_vis": _PIXELS,
        }
        with open(staging / "batches.meta", "wb") as handle:
            write_py2_pickle(meta, handle, memo=True)
    return target


def write_py2_pickle(record, handle: BinaryIO, memo: bool = False) -> None:
    """Pickle ``record`` as CIFAR-10's Python 2 files are pickled (see ``_py2_opcodes``)."""
    for chunk in _py2_opcodes(record, memo):
        handle.write(chunk)


def _py2_opcodes(obj, memo: bool, counter: list[int] | None = None) -> Iterator[bytes]:
    """Protocol-2 opcodes as Python 2's ``cPickle`` emitted them for CIFAR-10's records: str as
    byte strings, lists and dicts in batches of 1,000, uint8 arrays through
    ``numpy.core.multiarray._reconstruct`` with the pixels as one BINSTRING (written without
    copying). ``memo`` adds BINPUT after every str, list and dict, numbered from 1, as the
    real ``batches.meta`` has it (the data batches have none). Handles only what the records
    hold: dict, list, str, int and 2-D uint8 arrays."""
    top = counter is None
    counter = [1] if top else counter
    if top:
        yield b"\x80\x02"
    if isinstance(obj, dict):
        yield b"}" + _binput(memo, counter)
        yield from _batched(
            [part for key, value in obj.items() for part in (key, value)],
            b"s",
            b"u",
            memo,
            counter,
            per_item=2,
        )
    elif isinstance(obj, list):
        yield b"]" + _binput(memo, counter)
        yield from _batched(obj, b"a", b"e", memo, counter)
    elif isinstance(obj, str):
        yield _binstring(obj.encode("latin1")) + _binput(memo, counter)
    elif isinstance(obj, (int, np.integer)) and not isinstance(obj, bool):
        yield _int(int(obj))
    elif isinstance(obj, np.ndarray) and obj.dtype == np.uint8 and obj.ndim == 2:
        rows, cols = obj.shape
        yield (
            b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\n"
            + _int(0)
            + b"\x85"
            + _binstring(b"b")
            + b"\x87R("
            + _int(1)
            + _int(rows)
            + _int(cols)
            + b"\x86"
            + b"cnumpy\ndtype\n"
            + _binstring(b"u1")
            + _int(0)
            + _int(1)
            + b"\x87R("
            + _int(3)
            + _binstring(b"|")
            + b"NNN"
            + _int(-1)
            + _int(-1)
            + _int(0)
            + b"tb\x89"
            + b"T"
            + struct.pack("<i", obj.nbytes)
        )
        yield memoryview(np.ascontiguousarray(obj)).cast("B")
        yield b"tb"
    else:
        raise TypeError(f"cannot write {type(obj).__name__} in a CIFAR-10 batch file")
    if top:
        yield b"."


def _batched(
    items: list, single: bytes, many: bytes, memo: bool, counter: list[int], per_item: int = 1
) -> Iterator[bytes]:
    """Python 2's ``batch_appends``/``batch_setitems``: MARK..APPENDS per 1,000 items, a lone
    item with APPEND (SETITEM for dicts)."""
    step = 1000 * per_item
    for start in range(0, len(items), step):
        chunk = items[start : start + step]
        if len(chunk) > per_item:
            yield b"("
        for item in chunk:
            yield from _py2_opcodes(item, memo, counter)
        yield many if len(chunk) > per_item else single


def _binput(memo: bool, counter: list[int]) -> bytes:
    if not memo:
        return b""
    counter[0] += 1
    index = counter[0] - 1
    return b"q" + bytes([index]) if index < 256 else b"r" + struct.pack("<I", index)


def _binstring(data: bytes) -> bytes:
    return (
        b"U" + bytes([len(data)]) if len(data) < 256 else b"T" + struct.pack("<i", len(data))
    ) + data


def _int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    return b"J" + struct.pack("<i", value)


def _spread(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _check_counts(train: int, test: int) -> None:
    files = len(SPLIT_FILES["train"])
    if not files <= train <= files * MAX_PER_FILE:
        raise LieRayError(
            f"--train must lie in {files}..{files * MAX_PER_FILE} (one image per "
            f"batch file at least), got {train}: e.g. --train {FULL_TRAIN}"
        )
    if not 1 <= test <= MAX_PER_FILE:
        raise LieRayError(
            f"--test must lie in 1..{MAX_PER_FILE}, got {test}: e.g. --test {FULL_TEST}"
        )


class _OneLineParser(argparse.ArgumentParser):
    """Usage mistakes as one ``error:`` line and exit status 2, like the ``lie-ray`` CLI."""

    def error(self, message: str):
        self.exit(2, f"error: {message}; see '{self.prog} --help'\n")


def main(argv: list[str] | None = None) -> None:
    parser = _OneLineParser(
        prog="python -m lie_ray.data.synthetic",
        description="Write a CIFAR-10 layout of generated images (for scale "
        "benchmarks; never commit it).",
    )
    parser.add_argument("out", help=f"directory to write {DIRECTORY_NAME} into")
    parser.add_argument(
        "--train",
        type=int,
        default=FULL_TRAIN,
        help="train images over data_batch_1..5 (default: %(default)s)",
    )
    parser.add_argument(
        "--test",
        type=int,
        default=FULL_TEST,
        help="test images in test_batch (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=0, help="same seed, same bytes")
    args = parser.parse_args(argv)
    try:
        target = write_dataset(args.out, args.train, args.test, args.seed)
    except LieRayError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"wrote {args.train} train and {args.test} test images to {target}")


if __name__ == "__main__":
    main()
