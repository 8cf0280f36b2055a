"""Key policies: which sub-key encrypts which image.

A policy maps each row's stable ``id`` (carried with the data from the moment it is loaded) to
a sub-key label; a ``transforms.KeyedTransform`` (a master key seen through one transform)
turns the label into that transform's key. Keying on ids, never on a batch's
position in a stream, makes the result independent of how Ray Data splits, orders or batches the
rows, and reproducible in any later run. A new policy (per-epoch, per-client, ...) is one small
subclass registered in ``POLICIES``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from lie_ray.errors import LieRayError
from lie_ray.keys import FIXED_LABEL, IMAGE_SIZE, Key, load_key

if TYPE_CHECKING:  # torch is imported only by the autograd path, never by Ray Data's actors
    import torch

    from lie_ray.transforms import KeyedTransform


class KeyPolicy(ABC):
    name: ClassVar[str]
    # True: the training worker keys each mini-batch itself (``step_label``), so the training
    # data reach it plain; the labels of ``labels`` then serve everything but training.
    encrypts_on_worker: ClassVar[bool] = False

    @abstractmethod
    def labels(self, ids: np.ndarray, split: str) -> np.ndarray:
        """The sub-key label for every row id of ``split`` (``train`` or ``test``)."""

    def check_key(self, key: Key) -> None:  # noqa: B027 (a hook: most policies take any key)
        """Raise if ``key`` cannot serve this policy."""

    def encrypt(
        self, key: KeyedTransform, images: np.ndarray, ids: np.ndarray, split: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Encrypt uint8 NHWC ``images``; return them with each row's sub-key label.
        Output dtype is the transform's."""
        labels = self.labels(np.asarray(ids), split)
        out = None
        for label in np.unique(labels):  # one pass per distinct sub-key, a handful per batch
            rows = labels == label
            piece = key.transform(str(label)).encrypt(images[rows])
            if out is None:
                out = np.empty(images.shape, dtype=piece.dtype)
            out[rows] = piece
        return (images.copy() if out is None else out), labels

    def encrypt_torch(
        self,
        key: KeyedTransform,
        images: torch.Tensor,
        ids: np.ndarray,
        split: str,
        backward: str | None = None,
    ) -> torch.Tensor:
        """The autograd twin of ``encrypt`` for float NCHW tensors on any device: the same
        ciphertext, with the chosen backward pass (``Transform.with_grad``: the true gradient
        where the transform has one, else the named BPDA surrogate; None: its default)."""
        import torch

        labels = self.labels(np.asarray(ids), split)
        distinct = np.unique(labels)
        if len(distinct) == 1:
            return key.transform(str(distinct[0])).with_grad(images, backward)
        order = np.argsort(labels, kind="stable")
        pieces = []
        for label in distinct:  # one call per distinct sub-key in the batch
            rows = torch.from_numpy(np.flatnonzero(labels == label)).to(images.device)
            pieces.append(
                key.transform(str(label)).with_grad(images.index_select(0, rows), backward)
            )
        grouped = torch.cat(pieces)  # rows in the order of ``order``
        restore = torch.from_numpy(np.argsort(order, kind="stable")).to(images.device)
        return grouped.index_select(0, restore)


class FixedPolicy(KeyPolicy):
    """One key for every image, train and test alike (the paper's Encrypted scenarios)."""

    name = "fixed"

    def labels(self, ids: np.ndarray, split: str) -> np.ndarray:
        return np.full(len(ids), FIXED_LABEL, dtype=object)


class IdGroupPolicy(KeyPolicy):
    """A fixed key for every group of ``batch_size`` consecutive ids, the same in every epoch.

    Groups are formed from ids, so "group 17 of train" means ids 17*B .. 18*B-1 wherever and
    however those rows are processed. Shuffled mini-batches mix several groups, so a model
    trained this way meets a few dozen fixed keys and may learn each: this is NOT the paper's
    "different random key per batch" (``per-minibatch``), and it was lie_ray's "per-batch"
    before that name was retired.
    """

    name = "id-group"

    def __init__(self, batch_size: int = 128):
        if batch_size < 1:
            raise LieRayError(
                f"{self.name} key group size must be >= 1, got {batch_size}: pass "
                "--key-batch-size 1 or more (128 by default)"
            )
        self.batch_size = batch_size

    def labels(self, ids: np.ndarray, split: str) -> np.ndarray:
        groups, row_group = np.unique(
            np.asarray(ids, dtype=np.int64) // self.batch_size, return_inverse=True
        )
        names = np.array([f"batch/{split}/{g}" for g in groups], dtype=object)
        return names[row_group.reshape(-1)]

    def check_key(self, key: Key) -> None:
        key.require_master(f"the {self.name} policy needs a master key")


class PerMinibatchPolicy(IdGroupPolicy):
    """A fresh key for every training mini-batch of every epoch: the paper's Encrypted-DK
    ("each batch of the dataset was encrypted using a different random key").

    The training worker draws it for the batch it actually trains on (``step_label``: one
    label per epoch and step, shared by every rank's share of that global mini-batch, so
    reproducible on resume and independent of how Ray Data shuffles). Encrypting on the worker
    costs 0.05% of a training step. Images outside training (the test set, the evaluation's
    clean pass over the train set) are keyed per group of ``batch_size`` ids, as
    ``id-group``: keys never used in training, as a fresh draw would be.
    """

    name = "per-minibatch"
    encrypts_on_worker = True

    def step_label(self, epoch: int, step: int) -> str:
        return f"minibatch/{epoch}/{step}"


class PerImagePolicy(IdGroupPolicy):
    """A fresh key for every image (Random PE, Sirichotedumrong, Kinoshita & Kiya 2019):
    ``image/<split>/<id>``, reproducible from the master key and the image's id."""

    name = "per-image"

    def __init__(self, batch_size: int = 1):
        super().__init__(1)

    def labels(self, ids: np.ndarray, split: str) -> np.ndarray:
        return np.array(
            [f"image/{split}/{int(i)}" for i in np.asarray(ids).reshape(-1)], dtype=object
        )


POLICIES: dict[str, type[KeyPolicy]] = {
    cls.name: cls for cls in (FixedPolicy, IdGroupPolicy, PerMinibatchPolicy, PerImagePolicy)
}
# Policies with options: the key-batch size is theirs, and their run records carry it.
GROUPED = ("id-group", "per-minibatch")
RETIRED = {
    "per-batch": "'per-batch' is retired (it gave a fixed key to each group of ids, "
    "not a fresh key per batch): choose 'per-minibatch' (a fresh key for "
    "every training mini-batch, the paper's DK) or 'id-group' (what "
    "'per-batch' did)"
}


def unknown_policy(name: object) -> str:
    """The one-line complaint about a policy name that is not in ``POLICIES``."""
    if name in RETIRED:
        return f"key policy {RETIRED[name]}"
    return f"unknown key policy {name!r}: choose one of {', '.join(POLICIES)}"


def make_policy(name: str, **options) -> KeyPolicy:
    if name not in POLICIES:
        raise LieRayError(unknown_policy(name))
    return POLICIES[name](**options)


@dataclass(frozen=True)
class PolicySpec:
    """A key policy by name plus its options: plain data, safe to put in configs and logs."""

    name: str = "fixed"
    key_batch_size: int = 128

    def build(self) -> KeyPolicy:
        options = {"batch_size": self.key_batch_size} if self.name in GROUPED else {}
        return make_policy(self.name, **options)


def load_key_for_policies(
    key_path, policies, key_batch_size: int = 128, block_size: int | None = None
) -> Key | None:
    """Load ``key_path`` and check it can serve every named policy on CIFAR-sized images.

    What a job runs in its driver before Ray starts, so that a missing, exposed, damaged or
    unsuitable key (wrong block size, one that does not divide 32x32, an imported permutation
    under a policy that derives sub-keys) is a one-line error, not a failure inside a Ray
    actor. Without a key: None when no policy needs one, else an error.
    """
    if key_path is None:
        if policies:
            raise LieRayError(
                "encrypted scenarios need a key: pass --key FILE (make one with 'lie-ray keygen')"
            )
        return None
    specs = {PolicySpec(name, key_batch_size) for name in policies}
    for spec in specs:  # an unknown policy is the user's first mistake to hear about
        spec.build()
    key = load_key(key_path, block_size=block_size, image_size=IMAGE_SIZE)
    for spec in specs:
        spec.build().check_key(key)
    return key
