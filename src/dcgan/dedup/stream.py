"""Images to deduplicate, decoded a chunk at a time so a million files never sit in memory at once.

A source is a list of identifiers (file paths, or `name[i]` for a standard set without files) and a way to
decode any subset of them into the paper's 32x32 centre crops, together with what picks the copy to keep
(the original's pixel area and file size) and the sha256 of each file's bytes (exact duplicates).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dcgan.data import load_images, registry
from dcgan.data.folder import list_images
from dcgan.data.transform import pil_to_array
from dcgan.dedup.autoencoder import CROP
from dcgan.errors import DataError


@dataclass
class Chunk:
    """Decoded images of one chunk; files that could not be decoded are left out (`positions` says which came)."""

    positions: np.ndarray  # (n,) int64 position of each image in the source
    images: np.ndarray  # (n, C, size, size) uint8
    digests: np.ndarray  # (n, 32) uint8 sha256 of the file's bytes (of the pixels where there is no file)
    areas: np.ndarray  # (n,) int64 width * height of the original image
    nbytes: np.ndarray  # (n,) int64 file size


class Source(Protocol):
    ids: list[str]
    channels: int
    has_files: bool
    folder: Path | None  # the folder the files were found in (the output must not go there)

    def read(self, positions: Sequence[int], size: int = CROP) -> Chunk: ...


def _empty_chunk(channels: int, size: int) -> Chunk:
    return Chunk(
        np.zeros(0, np.int64), np.zeros((0, channels, size, size), np.uint8), np.zeros((0, 32), np.uint8),
        np.zeros(0, np.int64), np.zeros(0, np.int64),
    )  # fmt: skip


class FileSource:
    """Image files (a folder searched recursively, or a .txt list), decoded on a thread pool."""

    has_files = True

    def __init__(
        self, files: list[str], channels: int = 3, folder: Path | None = None, workers: int | None = None
    ) -> None:
        self.ids = files
        self.folder = folder  # the folder the files were found in, if any
        self.channels = channels
        self.workers = workers or min(8, (os.cpu_count() or 1) + 1)

    def _read_one(self, path: str, size: int) -> tuple[np.ndarray, bytes, int, int] | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with open(path, "rb") as f:
                blob = f.read()
            with Image.open(io.BytesIO(blob)) as image:
                area = image.width * image.height
                image.draft("RGB" if self.channels == 3 else "L", (size, size))  # JPEG decodes at 1/2..1/8 scale
                array = pil_to_array(image, size, self.channels)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None
        return array, hashlib.sha256(blob).digest(), area, len(blob)

    def read(self, positions: Sequence[int], size: int = CROP) -> Chunk:
        with ThreadPoolExecutor(self.workers) as pool:
            results = list(pool.map(lambda p: self._read_one(self.ids[p], size), positions))
        ok = [(p, r) for p, r in zip(positions, results, strict=True) if r is not None]
        if not ok:
            return _empty_chunk(self.channels, size)
        return Chunk(
            np.array([p for p, _ in ok], np.int64),
            np.stack([r[0] for _, r in ok]),
            np.frombuffer(b"".join(r[1] for _, r in ok), np.uint8).reshape(-1, 32),
            np.array([r[2] for _, r in ok], np.int64),
            np.array([r[3] for _, r in ok], np.int64),
        )


class ArraySource:
    """A standard data set already decoded by `load_images` (uint8 (N, C, S, S)); exact duplicates by pixels."""

    has_files = False
    folder: Path | None = None

    def __init__(self, name: str, images: np.ndarray) -> None:
        self.ids = [f"{name}[{i}]" for i in range(len(images))]
        self.channels = int(images.shape[1])
        self.images = images

    def read(self, positions: Sequence[int], size: int = CROP) -> Chunk:
        from dcgan.data.transform import resize_batch

        idx = np.asarray(positions, np.int64)
        raw = self.images[idx]
        digests = np.frombuffer(b"".join(hashlib.sha256(a.tobytes()).digest() for a in raw), np.uint8)
        area = raw.shape[-1] * raw.shape[-2]
        images = resize_batch(np.ascontiguousarray(raw), size) if raw.shape[-1] != size else raw
        return Chunk(idx, images, digests.reshape(-1, 32), np.full(len(idx), area), np.full(len(idx), raw[0].nbytes))


def open_source(data: str | Path, *, root: str | Path | None = None, channels: int | None = None) -> Source:
    """The images `--data` names: a folder (recursive), a .txt list of paths, or a standard data set name.

    Folders and lists are streamed from disk; a standard set is loaded by `load_images` (it lives in memory
    at its own size already). CelebA and ImageNet keep their file paths.

    Raises:
        DataError: the path does not exist, holds no images, or the named set is missing.
    """
    name = str(data)
    entry = registry.find(name)
    if entry is not None:
        # A set of fixed-size images loads at its own size (exact duplicates are identical pixels there) and is
        # resized to CROP as it is read; one whose images differ in size loads straight at CROP.
        loaded = load_images(name, root=root, image_size=entry.size or CROP, channels=channels)
        if loaded.files is not None:
            return FileSource(loaded.files, channels or entry.channels)
        return ArraySource(name.replace(":", "-"), loaded.images.numpy())
    path = Path(name).expanduser()
    if not path.exists():
        names = ", ".join(registry.names())
        raise DataError(f"--data {name!r} is neither a data set name ({names}) nor an existing path.")
    files = [str(f) for f in list_images(path.resolve())]
    if not files:
        raise DataError(f"--data {path} holds no image files.")
    return FileSource(files, channels or 3, folder=path.resolve() if path.is_dir() else None)


def chunks(n: int, size: int) -> list[range]:
    """Consecutive position ranges of at most `size` covering 0..n-1."""
    return [range(start, min(n, start + size)) for start in range(0, n, size)]
