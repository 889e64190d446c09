"""`dcgan extractor fit`: train a domain classifier whose features the metrics can use offline.

A LeNet-style net for the digit sets, a small CNN for CIFAR-10 and folders of photographs; trained on the train
split, its accuracy on the test split is measured and saved with the weights, so a user can see how good the
feature space is. A folder has no test split: a seeded share of its images (`HOLDOUT`) is held out instead.
Its labels come from one subfolder per class or from the file names (`labels_from_name`, e.g. UTKFace's
gender), and its class names are saved too, so `coverage` can report each group by name.

A classifier fitted on an uneven set reads its small classes too rarely on images it has not seen (before
calibration, `cnn-utkface64-race` read 2.4% of the held-out faces as black against 3.9% labelled: a generator that
draws black faces exactly as often as the data would score 0.60x). Counting its top classes is what `coverage` and
`--balance-groups` do, so a held-out split is also used to calibrate it (`calibrate`): one offset per class
added to the logits (a change of the class priors) so that the held-out images are read in their labelled
proportions. Its effect is measured by cross-fitting (offsets fitted on one half of the held-out images, read on
the other) and saved: `heldout_read`, each class's held-out share as read over its labelled share.
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
from torch import nn

from dcgan.data import ImageData, load_images, registry
from dcgan.errors import ConfigError, DataError
from dcgan.metrics.extractors import ARCHES, Ensemble, FeatureExtractor, extractor_dir, save_extractor

#: Training length by architecture, in optimiser steps (rounded up to whole epochs): a few minutes on a CPU.
DEFAULT_STEPS = {"lenet": 2000, "cnn": 1500}
#: The share of a data set without a test split that is held out to measure the classifier on.
HOLDOUT = 0.15
#: Rounds of the calibration's search for the class offsets (each a pass over the held-out logits: cheap).
CALIBRATION_ROUNDS = 300


def default_arch(data: str) -> str:
    """The network fitted on a data set: its registry entry's `fit_arch` (LeNet for the grey digit-sized sets),
    else the small CNN."""
    entry = registry.find(data)
    return entry.fit_arch if entry is not None and entry.fit_arch is not None else "cnn"


def default_epochs(arch: str, train_images: int, batch_size: int) -> int:
    """Enough whole epochs for about `DEFAULT_STEPS[arch]` steps: more passes over a small set than a large one."""
    per_epoch = math.ceil(train_images / batch_size)
    return max(1, math.ceil(DEFAULT_STEPS[arch] / per_epoch))


def extractor_name(arch: str, data: str, labels_from_name: str | None = None, members: int = 1) -> str:
    """What `--features` calls an extractor: `<arch>-<data>`, the data being a set's name or a folder's own
    name, `-<field>` for labels read from file names (`cnn-utkface64-gender`) and `-x<N>` for an ensemble of N."""
    if registry.find(data) is None:
        data = Path(data).expanduser().resolve().name
        data = re.sub(r"[^a-z0-9.+]+", "-", data.lower()).strip("-.") or "folder"
    return (
        f"{arch}-{data}"
        + (f"-{labels_from_name}" if labels_from_name else "")
        + (f"-x{members}" if members > 1 else "")
    )


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


def prior_offsets(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per-class offsets to add to `logits` so that their top classes read each class about as often as `labels`
    hold it.

    A search: each round moves every class's offset by a shrinking step times the log of its labelled share over
    its read share, and the offsets with the smallest worst log error are kept. Classes without a label keep 0.

    Args:
        logits: (N, classes) float logits.
        labels: (N,) the images' classes.
    """
    count = logits.shape[1]
    logits = logits.double()
    target = torch.bincount(labels, minlength=count)[:count].double() / len(labels)
    present = target > 0
    offsets = torch.zeros(count, dtype=torch.float64)
    best, best_error = offsets.clone(), math.inf
    for round_ in range(CALIBRATION_ROUNDS):
        read = torch.bincount((logits + offsets).argmax(1), minlength=count)[:count].double() / len(labels)
        error = (target[present] / read[present].clamp(min=0.5 / len(labels))).log()
        worst = float(error.abs().max())
        if worst < best_error:
            best, best_error = offsets.clone(), worst
        offsets[present] += error / (2 + round_ / 20)
    return (best - best[present].mean()).float()


def shift_logits(model: FeatureExtractor, offsets: torch.Tensor) -> None:
    """Add `offsets` to the bias of the classifier's last linear layer (its logits move by them); an ensemble's to
    its own offsets, after the members' mean."""
    if isinstance(model, Ensemble):
        model.offsets.add_(offsets.to(model.offsets))
        return
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    assert last.bias is not None and last.bias.shape == offsets.shape
    with torch.no_grad():
        last.bias.add_(offsets.to(last.bias))


@torch.no_grad()
def calibrate(
    model: FeatureExtractor, images: torch.Tensor, labels: torch.Tensor, seed: int = 0, measured_on: str = "held-out"
) -> dict[str, str]:
    """Move the classifier's logits by `prior_offsets` fitted on held-out images, so counting its top classes on
    new images of the same data gives their labelled shares; measure that by cross-fitting.

    The images are halved (seeded); offsets fitted on one half read the other, and the two readings together
    give each class's read share over its labelled share (`heldout_read`, 1 being unbiased) and the accuracy;
    the same before calibration is `uncalibrated_read`. The model keeps offsets fitted on all of them.

    Returns:
        metadata to save with the model: `calibrated`, `heldout_read`, `uncalibrated_read` (JSON lists in class
        order, null for a class with no held-out image), `test_accuracy` (cross-fitted) and
        `uncalibrated_accuracy`.
    """
    logits = model.extract(images, batch_size=500, logits=True).logits
    assert logits is not None
    labels = labels.long().cpu()
    count = logits.shape[1]
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    halves = (order[: len(order) // 2], order[len(order) // 2 :])
    top = torch.empty_like(labels)
    for fit_on, read_on in (halves, halves[::-1]):
        top[read_on] = (logits[read_on] + prior_offsets(logits[fit_on], labels[fit_on])).argmax(1)
    labelled = torch.bincount(labels, minlength=count)[:count].double()

    def ratios(read: torch.Tensor) -> str:
        shares = torch.bincount(read, minlength=count)[:count].double()
        return json.dumps([round(float(r / n), 4) if n > 0 else None for r, n in zip(shares, labelled)])

    plain = logits.argmax(1)
    shift_logits(model, prior_offsets(logits, labels))
    meta = {
        "calibrated": f"class offsets fitted on {len(labels):,} images ({measured_on})",
        "heldout_read": ratios(top), "uncalibrated_read": ratios(plain),
        "test_accuracy": f"{float((top == labels).double().mean()):.4f}",
        "uncalibrated_accuracy": f"{float((plain == labels).double().mean()):.4f}",
    }  # fmt: skip
    if isinstance(model, Ensemble):
        meta.update(calibrate_members(model, images, labels, measured_on))
    return meta


@torch.no_grad()
def calibrate_members(
    model: Ensemble, images: torch.Tensor, labels: torch.Tensor, measured_on: str = "held-out"
) -> dict[str, str]:
    """Set each member's own `prior_offsets` on held-out images (`Ensemble.member_offsets`), so that each member
    alone reads them in their labelled shares too (`--balance-by lowest-member` counts each member's reading).

    Returns:
        metadata to save with the model: `members_calibrated`.
    """
    model.member_offsets.zero_()
    read = model.member_logits(images).cpu()
    labels = labels.long().cpu()
    for i, logits in enumerate(read):
        model.member_offsets[i] = prior_offsets(logits, labels).to(model.member_offsets)
    return {"members_calibrated": f"each member's class offsets fitted on {len(labels):,} images ({measured_on})"}


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
    calibrate_on_test: bool = False,
    members: int = 1,
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
        calibrate_on_test: move the logits so `test` is read in its labelled proportions (`calibrate`); the
            accuracy saved is then the cross-fitted one.
        members: fit this many classifiers, seeded `seed`, `seed + 1`, ..., on the same images, and return them
            as one `Ensemble` (the first is the classifier one member alone would be).

    Returns:
        (the model in eval mode, its metadata: test accuracy, what it was measured on, data, class names,
        epochs, image counts, seconds).
    """
    if arch not in ARCHES:
        raise ConfigError(f"--arch must be one of {', '.join(ARCHES)}, got {arch!r}.")
    if members < 1:
        raise ConfigError(f"--members must be at least 1, got {members}.")
    for part in (train, test):
        if part.labels is None or len(part.labels) != len(part):
            raise DataError(f"{part.name} ({part.split}) has no class labels; an extractor is trained as a classifier.")
    assert train.labels is not None and test.labels is not None
    num_classes = max(train.num_classes or 0, test.num_classes or 0)
    if num_classes < 2:
        raise DataError(f"{train.name} has one class; a classifier needs at least two.")
    start = time.perf_counter()
    nets = [
        _train_one(arch, num_classes, train, epochs=epochs, batch_size=batch_size, lr=lr, flip=flip, seed=seed + i,
                   device=device, progress=progress, label=f" (member {i + 1} of {members})" if members > 1 else "")
        for i in range(members)
    ]  # fmt: skip
    model = nets[0] if members == 1 else Ensemble(nets).to(device)
    model.eval()
    classes = train.classes or tuple(str(i) for i in range(num_classes))
    meta = {
        "data": train.name, "test_accuracy": f"{accuracy(model, test.images, test.labels):.4f}",
        "measured_on": measured_on, "classes": json.dumps(list(classes)),
        "train_images": str(len(train)), "test_images": str(len(test)), "epochs": str(epochs),
        "seconds": f"{time.perf_counter() - start:.0f}", "seed": str(seed),
    }  # fmt: skip
    if members > 1:
        meta["member_seeds"] = f"{seed}-{seed + members - 1}"
    if calibrate_on_test and len(test) >= 4:
        meta.update(calibrate(model, test.images, test.labels, seed, measured_on))
    model.name = name or f"{arch}-{train.name}"
    model.meta = meta
    return model, meta


def _train_one(
    arch: str,
    num_classes: int,
    train: ImageData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    flip: bool,
    seed: int,
    device: str | torch.device,
    progress: bool,
    label: str = "",
) -> FeatureExtractor:
    """A new `arch` classifier fitted on `train`'s labels (Adam, cosine-decayed learning rate), its weights and
    batches seeded by `seed`, in eval mode."""
    assert train.labels is not None
    torch.manual_seed(seed)
    model = ARCHES[arch](num_classes=num_classes).to(device)
    steps = epochs * ((len(train) + batch_size - 1) // batch_size)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, steps))
    g = torch.Generator().manual_seed(seed)
    from tqdm import tqdm

    bar = tqdm(total=steps, desc=f"fitting {arch} on {train.name}{label}", disable=not progress, unit="step")
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
    return model.eval()


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
    calibrate: bool | None = None,
    members: int = 1,
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
            `extractor_name`, e.g. `lenet-mnist`, `cnn-utkface64-gender`) being what `--features` looks up; the
            extractor is named after the file (its stem: the name `--features` finds it by in that folder).
        labels_from_name: read a folder's labels from its file names: `gender`, `race` or `age`.
        holdout: the share held out where there is no test split.
        calibrate: calibrate the class readings on the held-out images or test split (`calibrate`); by default
            where images are held out (a folder, whose classes are often uneven), not on a standard test split.
        members: fit this many, seeded `seed`, `seed + 1`, ..., on the same split, saved as one `Ensemble`
            named `<name>-x<members>` (`cnn-utkface64-race-x3`).

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
        name=Path(out).stem if out is not None else extractor_name(arch, data, labels_from_name, members),
        measured_on=measured_on, calibrate_on_test=measured_on != "test split" if calibrate is None else calibrate,
        members=members,
    )  # fmt: skip
    if labels_from_name is not None:
        meta["labels_from_name"] = labels_from_name
        model.meta = meta
    path = Path(out) if out is not None else extractor_dir() / f"{model.name}.safetensors"
    save_extractor(model, path)
    return path, {"name": model.name, **meta}
