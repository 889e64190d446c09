"""Reference features: the real images' features under one extractor, computed once and cached on disk.

The cache (`<cache>/metrics/`) is keyed by data set, split, image size, channels, the data's source and a
sample of its pixels, and the extractor's fingerprint (a hash of its weights), so a refitted extractor or a
changed folder never reuses stale features.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dcgan.data import ImageData, load_images
from dcgan.data.cache import cache_dir, cache_key
from dcgan.data.labels import parse_names
from dcgan.errors import ConfigError
from dcgan.metrics.extractors import FeatureExtractor, class_names
from dcgan.metrics.registry import Memo


@dataclass
class Groups:
    """The reference images' groups under a classifier's classes, for `coverage`.

    Attributes:
        classes: the classifier's class names, group i being classes[i].
        labels: (N,) int64, each reference image's group; -1 where it has none (a name that does not parse).
        source: where the groups came from, for people: the images' own labels or the classifier's predictions.
        predicted: (N,) the classifier's top class for each reference image (the same as `labels` when the groups
            are its predictions): how far its reading of real images is from their labels.
    """

    classes: tuple[str, ...]
    labels: torch.Tensor
    source: str
    predicted: torch.Tensor | None = None


@dataclass
class Reference:
    """The reference side of every metric: (N, D) features of the real images and where they came from."""

    features: torch.Tensor
    data: str
    split: str
    image_size: int
    channels: int
    extractor: str
    memo: Memo = field(default_factory=Memo, repr=False)
    groups: Groups | None = None  # filled when a metric needs them (`coverage`)
    #: The images' own class labels (N,) and class names, where the data has them: what per-class FID
    #: (`intrafid`) compares each requested class of a conditional generator with.
    labels: torch.Tensor | None = field(default=None, repr=False)
    classes: tuple[str, ...] | None = None

    @property
    def count(self) -> int:
        return int(self.features.shape[0])

    def subset(self, n: int, seed: int = 0) -> torch.Tensor:
        """A fixed random subset of min(n, count) features (the same for the same seed)."""
        if n >= self.count:
            return self.features
        g = torch.Generator().manual_seed(seed)
        return self.features[torch.randperm(self.count, generator=g)[:n]]

    def describe(self) -> dict[str, object]:
        return {
            "data": self.data, "split": self.split, "images": self.count,
            "image_size": self.image_size, "channels": self.channels,
        }  # fmt: skip


def class_index(wanted: tuple[str, ...], have: tuple[str, ...]) -> list[int | None]:
    """For each class name in `wanted`, its index in `have` (the same name, else the same name ignoring case), or
    None where `have` lacks it: how a generator's classes are found among a classifier's or a data set's."""
    exact = {name: i for i, name in enumerate(have)}
    folded: dict[str, int] = {}
    for i, name in enumerate(have):
        folded.setdefault(name.casefold(), i)
    return [exact.get(name, folded.get(name.casefold())) for name in wanted]


def _key(images: ImageData, image_size: int, channels: int, extractor: FeatureExtractor) -> str:
    n = len(images)
    sample = images.images[:: max(1, n // 512)].contiguous().numpy().tobytes()
    pixels = hashlib.sha256(sample).hexdigest()[:16]
    return cache_key("reference", images.name, images.split, images.source, n, image_size, channels, pixels,
                     extractor.name, extractor.fingerprint)  # fmt: skip


def _save(path: Path, array: np.ndarray, meta: dict[str, str]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, path)
        path.with_suffix(".json").write_text(json.dumps(meta))
    except OSError:
        pass  # a read-only cache only costs the next run a recomputation


def reference_features(
    extractor: FeatureExtractor,
    data: str | ImageData,
    *,
    root: str | Path | None = None,
    split: str = "train",
    image_size: int = 32,
    channels: int | None = None,
    download: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    use_cache: bool = True,
    groups: bool = False,
) -> Reference:
    """The extractor's features of every image in a data set's split, from the cache when possible.

    Args:
        extractor: the feature network.
        data: a data set name or folder (loaded with `dcgan.data.load_images`), or already loaded `ImageData`.
        root, split, image_size, channels, download: passed to `load_images`; use the generator's size and
            channels so real and generated images go through the same conversion.
        batch_size: images per extractor batch.
        progress: show a progress bar while extracting.
        use_cache: read and write the on-disk cache.
        groups: also find each image's group under the extractor's classes (`reference_groups`).
    """
    images = data if isinstance(data, ImageData) else load_images(
        data, root=root, image_size=image_size, channels=channels, split=split, download=download
    )  # fmt: skip
    size, chans = int(images.images.shape[-1]), images.channels
    name = images.name.replace(":", "-").replace("/", "_")[-40:]
    key = _key(images, size, chans, extractor)
    path = cache_dir() / "metrics" / f"{name}-{images.split}-{size}-{chans}-{extractor.name}-{key}.npy"
    features: torch.Tensor | None = None
    if use_cache and path.with_suffix(".json").exists():
        try:
            features = torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            features = None
    if features is None:
        features = _extract(extractor, images.images, batch_size, progress, f"features of {images.name} {images.split}")
        if use_cache:
            meta = {"data": images.name, "split": images.split, "source": images.source, "extractor": extractor.name}
            _save(path, features.numpy(), meta)
    reference = Reference(features, images.name, images.split, size, chans, extractor.name)
    if images.labels is not None and len(images.labels) == len(images):
        reference.labels = images.labels.long()
        reference.classes = images.class_names
    if groups:
        reference.groups = reference_groups(extractor, images, batch_size=batch_size, progress=progress)
    return reference


def reference_groups(
    extractor: FeatureExtractor, images: ImageData, *, batch_size: int = 256, progress: bool = False
) -> Groups:
    """Each reference image's group under the extractor's classes, for `coverage`.

    The images' own labels where they name the same classes (a labelled set, or a folder whose file names carry
    the field the extractor was fitted on: its `labels_from_name`); else the extractor's predictions (argmax).

    Raises:
        ConfigError: the extractor is not a classifier fitted on labelled groups (e.g. the FID Inception).
    """
    classes = class_names(extractor)
    if classes is None:
        raise ConfigError(
            f"coverage needs a classifier fitted on labelled groups, and {extractor.name} is not one; fit one "
            "with `dcgan extractor fit --data FOLDER --labels-from-name gender` (or a labelled set) and pass "
            "--features with its name."
        )
    from tqdm import tqdm

    parts = []
    for start in tqdm(range(0, len(images), batch_size), desc="classifying", disable=not progress, unit="batch"):
        logits = extractor.extract(images.images[start : start + batch_size], batch_size=batch_size, logits=True)
        assert logits.logits is not None
        parts.append(logits.logits.argmax(1))
    predicted = torch.cat(parts)
    if images.labels is not None and images.classes == classes:
        return Groups(classes, images.labels.long(), f"the {images.name} labels", predicted)
    field_name = extractor.meta.get("labels_from_name")
    if field_name and images.files is not None:
        labels, named = parse_names(images.files, field_name)
        if named == classes and (labels >= 0).any():
            return Groups(classes, torch.from_numpy(labels), f"the {field_name} in the file names", predicted)
    return Groups(classes, predicted, f"{extractor.name}'s predictions", predicted)


def _extract(
    extractor: FeatureExtractor, images: torch.Tensor, batch_size: int, progress: bool, desc: str
) -> torch.Tensor:
    from tqdm import tqdm

    parts = []
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, unit="batch"):
        parts.append(extractor.extract(images[start : start + batch_size], batch_size=batch_size).features)
    return torch.cat(parts)
