"""Key files and fingerprints.

A key file holds ONE secret: either a 256-bit master secret from the OS CSPRNG (what
``lie-ray keygen`` writes), from which every transform's key is derived on demand
(``keys.derive``), or an imported LE permutation in the reference implementation's format
(``keys.permutation``). A ``Key`` is the secret, its ``stream`` and its fingerprint; turning a
key and a sub-key label into a transform is ``transforms.KeyedTransform``'s job alone.

Everything that leaves this module for logs, configs, tables or file names is a fingerprint.

File format (JSON, mode 0600)::

    {"format": "lie_ray-key", "version": 1, "block_size": 4, "channels": 3,
     "kind": "master", "secret": "<base64 of 32 bytes>"}
    {"format": "lie_ray-key", "version": 1, "block_size": 4, "channels": 3,
     "kind": "permutation", "secret": [95, 3, ...]}
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
import stat
from pathlib import Path

import numpy as np

from lie_ray.data.cifar import IMAGE_SHAPE
from lie_ray.errors import LieRayError
from lie_ray.infra import atomic
from lie_ray.infra.storage import check_uri, is_uri, read_bytes
from lie_ray.keys.derive import hkdf_sha256
from lie_ray.keys.permutation import permutation_fingerprint, validate_permutation

KEY_FORMAT = "lie_ray-key"
KEY_VERSION = 1
MASTER_SECRET_BYTES = 32
FIXED_LABEL = "fixed"
_FINGERPRINT_PREFIX = b"lie_ray/master-fingerprint/v1\0"
IMAGE_SIZE = IMAGE_SHAPE[:2]  # (height, width) of the images every job here encrypts


class Key:
    """A loaded secret plus what it is for: ``stream`` draws sub-key material from a master.

    ``repr`` and ``str`` show only the fingerprint, so a stray print or log line leaks nothing.
    """

    def __init__(self, kind: str, secret: bytes | np.ndarray, block_size: int, channels: int = 3):
        self.kind = kind
        self.block_size = block_size
        self.channels = channels
        self._secret = secret
        if kind == "master":
            digest = hashlib.sha256(
                _FINGERPRINT_PREFIX
                + block_size.to_bytes(2, "little")
                + channels.to_bytes(2, "little")
                + secret
            )
            self.fingerprint = digest.hexdigest()[:16]
        else:
            self.fingerprint = permutation_fingerprint(secret, block_size)

    def __repr__(self) -> str:
        return (
            f"Key(kind={self.kind}, block_size={self.block_size}, fingerprint={self.fingerprint})"
        )

    __str__ = __repr__

    @property
    def derives_subkeys(self) -> bool:
        return self.kind == "master"

    def require_master(
        self, reason: str, derives: str = "sub-keys", fix: str = "make one with 'lie-ray keygen'"
    ) -> None:
        """The one refusal of an imported permutation where a master key is needed.
        ``reason``: a clause saying who needs the master key and why."""
        if not self.derives_subkeys:
            raise LieRayError(
                f"key {self.fingerprint} is an imported permutation and cannot "
                f"derive {derives}: {reason}; {fix}"
            )

    def imported_permutation(self) -> np.ndarray:
        """The LE permutation an imported key holds (a copy); master keys hold none."""
        if self.kind != "permutation":
            raise LieRayError(
                f"key {self.fingerprint} is a master key, not an imported "
                "permutation: derive its LE key with transforms.build('le', key)"
            )
        return np.array(self._secret)

    def stream(self, info: str, length: int) -> bytes:
        """``length`` pseudorandom bytes for ``info`` (HKDF-SHA256 of the master secret): the
        source of every transform's sub-keys (``keys.derive``). Only master keys derive."""
        self.require_master("every transform but LE at the key's own block size needs a master key")
        return hkdf_sha256(self._secret, info.encode(), length)

    def to_json(self) -> str:
        secret = (
            base64.b64encode(self._secret).decode()
            if self.kind == "master"
            else [int(v) for v in self._secret]
        )
        return (
            json.dumps(
                {
                    "format": KEY_FORMAT,
                    "version": KEY_VERSION,
                    "block_size": self.block_size,
                    "channels": self.channels,
                    "kind": self.kind,
                    "secret": secret,
                }
            )
            + "\n"
        )


def generate_key(block_size: int = 4, channels: int = 3) -> Key:
    """A new master key from the operating system's CSPRNG."""
    if block_size < 1:
        raise LieRayError(
            f"block size must be a positive integer, got {block_size}: pass --block-size 2, 4 or 8"
        )
    return Key("master", secrets.token_bytes(MASTER_SECRET_BYTES), block_size, channels)


def check_block_size(block_size: int, image_size: tuple[int, int] = IMAGE_SIZE) -> None:
    """Raise unless ``block_size`` is a positive integer dividing both sides of the image.

    ``generate_key`` stays permissive (the cipher itself works on any image size); jobs call
    this before they write a key or start Ray, so a key no CIFAR image can use never exists.
    """
    height, width = image_size
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise LieRayError(
            f"block size must be a positive integer, got {block_size!r}: pass "
            "--block-size 2, 4 or 8"
        )
    if height % block_size or width % block_size:
        divisors = ", ".join(
            str(m) for m in range(1, min(height, width) + 1) if height % m == 0 and width % m == 0
        )
        raise LieRayError(
            f"block size {block_size} does not divide the image size "
            f"{height}x{width}: use one of {divisors} (--block-size)"
        )


def import_permutation(perm, block_size: int, channels: int = 3) -> Key:
    """Wrap a reference-format permutation as a key (usable with the ``fixed`` policy only)."""
    return Key(
        "permutation", validate_permutation(perm, block_size, channels), block_size, channels
    )


def key_location(path: str | os.PathLike | None) -> str | None:
    """How jobs refer to a key: a URI as given, a local file by its absolute path (workers
    chdir elsewhere). A reference, never the secret: safe in configs and task arguments."""
    if path is None:
        return None
    return str(path) if is_uri(path) else str(Path(path).resolve())


def save_key(key: Key, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``key`` atomically with mode 0600. Refuses to clobber a key unless told to."""
    target = Path(path)
    if target.is_dir():
        raise LieRayError(
            f"{target} is a directory: pass a file path for the key, e.g. "
            f"--out {target / 'master.json'}"
        )
    if target.exists() and not overwrite:
        raise LieRayError(
            f"{target} already exists: pick another path, or pass --force to "
            "replace it (the old key, and anything encrypted only with it, is lost)"
        )
    try:
        atomic.write_bytes(target, key.to_json().encode(), mode=0o600)
    except OSError as err:
        raise LieRayError(
            f"cannot write key file {target} ({type(err).__name__}: "
            f"{err.strerror or err}): choose a writable --out path"
        ) from None
    return target


def load_key(
    path: str | os.PathLike,
    block_size: int | None = None,
    image_size: tuple[int, int] | None = None,
) -> Key:
    """Load and validate a key file; every problem is a one-line ``LieRayError``.

    ``block_size``: the block size the caller needs. ``image_size``: (height, width) of the
    images it will encrypt; the key's block size must divide both.
    """
    if is_uri(path):  # cluster storage: its access policy protects the key, not a file mode
        check_uri(str(path), "--key")  # never credentials in a URI that lands in configs
        return _key_from_blob(_read_uri(str(path)), str(path), block_size, image_size)
    source = Path(path)
    if source.is_dir():
        raise LieRayError(
            f"key file {source} is a directory: pass the key file itself, e.g. "
            f"--key {source / 'master.json'}"
        )
    if source.exists() and not source.is_file():  # a device, a pipe: 'not found' would mislead
        raise LieRayError(
            f"key file {source} is not a regular file: pass the key file written "
            "by 'lie-ray keygen'"
        )
    if not source.is_file():
        raise LieRayError(
            f"key file {source} not found: create one with 'lie-ray keygen --out {source}'"
        )
    mode = stat.S_IMODE(source.stat().st_mode)
    if mode & 0o077:
        raise LieRayError(
            f"key file {source} is readable by group or others (mode {mode:o}): "
            f"run 'chmod 600 {source}'"
        )
    try:
        blob = source.read_bytes()
    except OSError as err:
        raise LieRayError(
            f"key file {source} cannot be read ({type(err).__name__}): check its "
            f"owner and run 'chmod 600 {source}'"
        ) from None
    return _key_from_blob(blob, source, block_size, image_size)


def _read_uri(location: str) -> bytes:
    """A key object in storage, read by the process that needs it (never shipped by Ray)."""
    try:
        return read_bytes(location)
    except FileNotFoundError:
        raise LieRayError(
            f"key {location} not found: upload a key made by 'lie-ray keygen' there"
        ) from None
    except (OSError, ValueError) as err:
        raise LieRayError(
            f"key {location} cannot be read ({type(err).__name__}): check the "
            "URI and that this node's credentials may read it"
        ) from None


def _key_from_blob(
    blob: bytes, source, block_size: int | None, image_size: tuple[int, int] | None
) -> Key:
    try:
        record = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LieRayError(
            f"key file {source} is truncated or not JSON: restore it from a backup "
            "or generate a new one with 'lie-ray keygen'"
        ) from None
    key = _parse_key(record, source)
    if block_size is not None and key.block_size != block_size:
        raise LieRayError(
            f"key file {source} was made for block size {key.block_size}, but "
            f"block size {block_size} was asked for: use a key made with "
            f"'lie-ray keygen --block-size {block_size}'"
        )
    if image_size is not None:
        try:
            check_block_size(key.block_size, image_size)
        except LieRayError as err:
            raise LieRayError(f"key file {source}: {err}") from None
    return key


def _parse_key(record, source: Path) -> Key:
    if not isinstance(record, dict) or record.get("format") != KEY_FORMAT:
        raise LieRayError(
            f'{source} is not a lie_ray key file (no "format": "{KEY_FORMAT}"): '
            "pass a key written by 'lie-ray keygen'"
        )
    if record.get("version") != KEY_VERSION:
        raise LieRayError(
            f"key file {source} has version {record.get('version')!r}, this lie_ray "
            f"reads version {KEY_VERSION}: upgrade lie_ray or re-create the key"
        )
    block_size, channels = record.get("block_size"), record.get("channels", 3)
    if not _positive_int(block_size) or not _positive_int(channels):
        raise LieRayError(
            f"key file {source} has an invalid block_size or channels field: the "
            "file is damaged; restore it or generate a new one with 'lie-ray keygen'"
        )
    kind, secret = record.get("kind"), record.get("secret")
    if kind == "master":
        try:
            raw = base64.b64decode(secret, validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise LieRayError(
                f"key file {source}: the secret is not valid base64; the file is "
                "damaged, restore it or generate a new one with 'lie-ray keygen'"
            ) from None
        if len(raw) != MASTER_SECRET_BYTES:
            raise LieRayError(
                f"key file {source}: the master secret has {len(raw)} bytes, "
                f"expected {MASTER_SECRET_BYTES}; the file is damaged: restore it "
                "or generate a new one with 'lie-ray keygen'"
            )
        return Key("master", raw, block_size, channels)
    if kind == "permutation":
        if not isinstance(secret, list) or not all(isinstance(v, int) for v in secret):
            raise LieRayError(
                f"key file {source}: a permutation key must be a list of integers; "
                "the file is damaged, restore it from a backup"
            )
        try:
            return import_permutation(secret, block_size, channels)
        except LieRayError as err:
            raise LieRayError(f"key file {source}: {err}") from None
    raise LieRayError(
        f"key file {source} has unknown kind {kind!r}, expected 'master' or "
        "'permutation': restore it or generate a new one with 'lie-ray keygen'"
    )


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
