"""Evaluate a model of your own with lie_ray, cell by cell (``# %%`` cells run in VS Code,
Jupyter's percent format, or as a plain script):

    python examples/evaluate_your_model.py [--data ../shared/data/cifar-10-batches-py]

A ten-line CNN trained for a minute on plain CIFAR-10, then on images behind a key-based
transform (block scrambling, Shuffle); lie_ray's adaptive evaluation attacks both: the paper's
readings, BPDA, EOT over keys, a transfer attack, PBA, Square and AutoAttack, and the attacks
with a key recovered from leaked pairs, each worst case per attacker.
"""

# %% Imports and data: uint8 NHWC images, as CIFAR-10's batches hold them
import argparse

import torch
import torch.nn.functional as F
from torch import nn

import lie_ray
from lie_ray import transforms
from lie_ray.data.cifar import load_split
from lie_ray.keys import generate_key

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--data", default="../shared/data/cifar-10-batches-py")
parser.add_argument("--images", type=int, default=64, help="test images attacked")
args = parser.parse_args()
torch.manual_seed(0)
everything, test = load_split(args.data, "train"), load_split(args.data, "test")
train = everything.head(2048)
# the attacker's own labelled images: never trained on, never attacked
own_images, own_labels = everything.images[2048:2304], everything.labels[2048:2304]
test = test.head(args.images)


# %% A model in ten lines
def small_cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


def fit(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, epochs: int = 3):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(epochs):
        for rows in torch.randperm(len(labels)).split(64):
            optimizer.zero_grad()
            F.cross_entropy(model(inputs[rows]), labels[rows]).backward()
            optimizer.step()
    return model.eval()


def as_float(images):
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


labels = torch.from_numpy(train.labels).long()

# %% Undefended: every plain-image attack, the worst case over them
plain_model = fit(small_cnn(), as_float(train.images), labels)
undefended = lie_ray.evaluate(plain_model, test.images, test.labels, eps=[8 / 255])
print("undefended\n", undefended, sep="")

# %% Behind a key-based transform: the model trains on the transform's output
shuffle = transforms.build("shuffle", generate_key())  # a fresh secret key
defended_model = fit(small_cnn(), shuffle.encrypt(as_float(train.images)), labels)
defended = lie_ray.evaluate(
    defended_model,
    test.images,
    test.labels,
    transform=shuffle,
    eps=[8 / 255],
    threat="keyless",  # the attacker knows the weights and the transform, not the key
    plain_model=plain_model,  # for the transfer attack
    attacker_images=own_images,  # the bypass and the key search fit on them
    attacker_labels=own_labels,  # (a quarter is held out to judge the fits)
)
print("the keyless attacker's fits:", defended.record["fits"])
print("\nShuffle, keyless attacker\n", defended, sep="")

# %% The tables: results.parquet's columns, and one row per image (examples.parquet's)
print()
print(
    defended.results.to_pandas()[
        ["evaluation", "epsilon", "n", "error", "ci_low", "ci_high"]
    ].to_string(index=False)
)
worst = defended.examples.to_pandas().query("evaluation == 'worst-case-keyless' and epsilon > 0")
print("\nwhat broke each image first:", worst.broken_by.value_counts().to_dict())
