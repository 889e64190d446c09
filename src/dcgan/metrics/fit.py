"""`dcgan extractor fit`: train a domain classifier whose features the metrics can use offline.

A LeNet-style net for the digit sets, a small CNN for CIFAR-10 and folders of photographs; trained on the train
split, its accuracy on the test split is measured and saved with the weights, so a user can see how good the
feature space is. A folder has no test split: a seeded share of its images (`HOLDOUT`) is held out instead.
Its labels come from one subfolder per class or from the file names (`labels_from_name`, e.g. UTKFace's
gender), and its class names are saved too, so `coverage` can report each group by name.
"""

from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dcgan.data import ImageData, load_images, registry
from dcgan.errors import ConfigError, DataError
from dcgan.metrics.extractors import ARCHES, FeatureExtractor, extractor_dir, save_extractor

#: Training length by architecture, in optimiser steps (rounded up to whole epochs): a few minutes on a CPU.
DEFAULT_STEPS = {"lenet": 2000, "cnn": 1500}
#: The share of a data set without a test split that is held out to measure the classifier on.
HOLDOUT = 0.15


def default_arch(data: str) -> str:
    """The network fitted on a data set: its registry entry's `fit_arch` (LeNet for the grey digit-sized sets),
    else the small CNN."""
    entry = registry.find(data)
    return entry.fit_arch if entry is not None and entry.fit_arch is not None else "cnn"


def default_epochs(arch: str, train_images: int, batch_size: int) -> int:
    """Enough whole epochs for about `DEFAULT_STEPS[arch]` steps: more passes over a small set than a large one."""
    per_epoch = math.ceil(train_images / batch_size)
    return max(1, math.ceil(DEFAULT_STEPS[arch] / per_epoch))


def extractor_name(arch: str, data: str, labels_from_name: str | None = None) -> str:
    """What `--features` calls an extractor: `<arch>-<data>`, the data being a set's name or a folder's own
    name, and `-<field>` for labels read from file names (`cnn-utkface64-gender`)."""
    if registry.find(data) is None:
        data = Path(data).expanduser().resolve().name
        data = re.sub(r"[^a-z0-9.+]+", "-", data.lower()).strip("-.") or "folder"
    return f"{arch}-{data}" + (f"-{labels_from_name}" if labels_from_name else "")


def hold_out(data: ImageData, fraction: float = HOLDOUT, seed: int = 0) -> tuple[ImageData, ImageData]:
    """(train, held-out): a seeded random `fraction` of the images held out, at least one on each side."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--holdout must be between 0 and 1, got {fraction}.")
    if len(data) < 2:
        raise DataError(f"{data.name} has {len(data)} image; holding some out to measure the classifier needs two.")
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    count = min(len(data) - 1, max(1, round(fraction * len(data))))
    return data.select(order[count:].sort().values), data.select(order[:count].sort().values)


@torch.no_grad()
def accuracy(model: FeatureExtractor, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Fraction of images whose highest logit is their label."""
    logits = model.extract(images, batch_size=batch_size, logits=True).logits
    assert logits is not None
    return float((logits.argmax(1) == labels.cpu()).double().mean())


def fit_extractor(
    train: ImageData,
    test: ImageData,
    *,
    arch: str = "lenet",
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 1e-3,
    flip: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    progress: bool = False,
    name: str | None = None,
    measured_on: str = "test split",
) -> tuple[FeatureExtractor, dict[str, str]]:
    """Train a classifier on `train` (uint8 images with labels) and measure it on `test`.

    Args:
        train, test: labelled image sets; any size and channel count (the net converts them). The classifier
            has as many classes as `train.classes` names (else the largest label + 1).
        arch: `lenet` or `cnn`.
        epochs: passes over `train` (Adam, learning rate decayed by cosine to zero).
        flip: random horizontal flips (for photographs, not digits).
        name: what `--features` will call it; default `<arch>-<train.name>`.
        measured_on: what `test` is, saved with the accuracy (e.g. "held-out 15% (seed 0)").

    Returns:
        (the model in eval mode, its metadata: test accuracy, what it was measured on, data, class names,
        epochs, image counts, seconds).
    """
    if arch not in ARCHES:
        raise ConfigError(f"--arch must be one of {', '.join(ARCHES)}, got {arch!r}.")
    for part in (train, test):
        if part.labels is None or len(part.labels) != len(part):
            raise DataError(f"{part.name} ({part.split}) has no class labels; an extractor is trained as a classifier.")
    assert train.labels is not None and test.labels is not None
    num_classes = max(train.num_classes or 0, test.num_classes or 0)
    if num_classes < 2:
        raise DataError(f"{train.name} has one class; a classifier needs at least two.")
    torch.manual_seed(seed)
    model = ARCHES[arch](num_classes=num_classes).to(device)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    g = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=f"fitting {arch} on {train.name}", disable=not progress, unit="step")
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(train), generator=g).split(batch_size):
            x = model.prepare(train.images[idx])
            if flip:
                mirror = torch.rand(len(idx), generator=g) < 0.5
                x = torch.where(mirror.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
            _, logits = model.embed(x)
            loss = F.cross_entropy(logits, train.labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            bar.update()
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    bar.close()
    model.eval()
    classes = train.classes or tuple(str(i) for i in range(num_classes))
    meta = {
        "data": train.name, "test_accuracy": f"{accuracy(model, test.images, test.labels):.4f}",
        "measured_on": measured_on, "classes": json.dumps(list(classes)),
        "train_images": str(len(train)), "test_images": str(len(test)), "epochs": str(epochs),
        "seconds": f"{time.perf_counter() - start:.0f}", "seed": str(seed),
    }  # fmt: skip
    model.name = name or f"{arch}-{train.name}"
    model.meta = meta
    return model, meta


def fit(
    data: str,
    *,
    root: str | Path | None = None,
    arch: str | None = None,
    epochs: int | None = None,
    out: str | Path | None = None,
    batch_size: int = 128,
    seed: int = 0,
    device: str | torch.device = "cpu",
    download: bool = False,
    progress: bool = False,
    labels_from_name: str | None = None,
    holdout: float = HOLDOUT,
) -> tuple[Path, dict[str, Any]]:
    """Fit a domain extractor on a data set's train split, test it on its test split, and save it.

    A data set without a test split (a folder, mnist5k) is split instead: `holdout` of its images, drawn by a
    permutation seeded with `seed`, are held out and the accuracy is measured on them.

    Args:
        data: `mnist`, `fashion-mnist`, `cifar10`, any labelled set `load_images` reads, or a folder with one
            subfolder per class or labels in its file names (`labels_from_name`).
        root: where the data set lives.
        arch: `lenet` (default for the digit sets) or `cnn` (default otherwise).
        epochs: defaults to about `DEFAULT_STEPS[arch]` steps' worth (`default_epochs`).
        out: the file to write; defaults to `<cache>/extractors/<name>.safetensors`, `<name>` (see
            `extractor_name`, e.g. `lenet-mnist`, `cnn-utkface64-gender`) being what `--features` looks up.
        labels_from_name: read a folder's labels from its file names: `gender`, `race` or `age`.
        holdout: the share held out where there is no test split.

    Returns:
        (the path written, the metadata saved with it, including `test_accuracy` and `measured_on`).
    """
    arch = arch or default_arch(data)
    if arch not in ARCHES:
        raise ConfigError(f"--arch must be one of {', '.join(ARCHES)}, got {arch!r}.")
    net = ARCHES[arch]
    load = lambda split: load_images(
        data, root=root, image_size=net.input_size, channels=net.in_channels, split=split, download=download,
        labels_from_name=labels_from_name,
    )  # fmt: skip
    train = load("train")
    if train.labels is None:
        raise DataError(
            f"--data {data} has no class labels to fit a classifier on: give it one subfolder per class, or read "
            "them from UTKFace-style file names with --labels-from-name gender|race|age."
        )
    entry = registry.find(data)
    if entry is not None and "test" in entry.splits:
        test, measured_on = load("test"), "test split"
    else:
        train, test = hold_out(train, holdout, seed)
        measured_on = f"held-out {holdout:.0%}, seed {seed}"
    model, meta = fit_extractor(
        train, test, arch=arch, epochs=epochs or default_epochs(arch, len(train), batch_size), batch_size=batch_size,
        flip=arch == "cnn", seed=seed, device=device, progress=progress,
        name=extractor_name(arch, data, labels_from_name), measured_on=measured_on,
    )  # fmt: skip
    if labels_from_name is not None:
        meta["labels_from_name"] = labels_from_name
        model.meta = meta
    path = Path(out) if out is not None else extractor_dir() / f"{model.name}.safetensors"
    save_extractor(model, path)
    return path, {"name": model.name, **meta}
