"""Any folder of images (recursive, every format Pillow reads), or a text file listing image paths.

Files that cannot be decoded are skipped and counted, never fatal: scraped folders are full of them.
"""

from __future__ import annotations

import functools
import hashlib
import io
import itertools
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from dcgan.data.transform import pil_to_array
from dcgan.errors import DataError

T = TypeVar("T")

#: Suffixes worth opening; other files (e.g. .txt, .json) are ignored without counting as skipped.
IMAGE_SUFFIXES = {
    ".bmp", ".dib", ".gif", ".ico", ".jfif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pcx", ".pgm", ".png",
    ".pnm", ".ppm", ".qoi", ".sgi", ".tga", ".tif", ".tiff", ".webp", ".avif", ".heic", ".dds", ".icns",
}  # fmt: skip


#: Whether listing and decoding show progress bars in the calling thread (`data_progress`); on by default.
_progress: ContextVar[bool] = ContextVar("dcgan_data_progress", default=True)


@contextmanager
def data_progress(enabled: bool) -> Iterator[None]:
    """Show (or hide) the listing and decoding progress bars while the block runs, in this thread only: a run
    started with `--no-progress` (or `progress=False`) loads its data without them."""
    token = _progress.set(enabled)
    try:
        yield
    finally:
        _progress.reset(token)


@dataclass
class Decoded:
    images: np.ndarray  # (N, C, size, size) uint8
    files: list[str]  # the file each image came from, in order
    skipped: list[str]  # files that could not be decoded


@dataclass
class Listing:
    """The image files of a folder or `.txt` list, found in one pass over its entries."""

    files: list[str]  # folder by folder (sorted), each folder's files before its subfolders', names sorted
    digest: str  # SHA-256 over each file's path, size and modification time: any change to a file changes it
    others: int  # files whose suffix is not an image's, never opened


def list_images(path: Path) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the paths listed in a .txt file (one per line)."""
    return [Path(f) for f in scan(path, stat=False, progress=False).files]


def scan(path: Path, *, stat: bool = True, progress: bool = True) -> Listing:
    """The image files under a folder (recursively) or listed in a .txt file, streamed from `os.scandir`.

    A folder of a million files costs one pass, one `stat` per image file (for `digest`; none with
    `stat=False`) and the list of image paths as strings: other files are counted, not kept, and a folder is
    read entry by entry rather than as a list of all its names. A progress bar counts the files as they are
    seen, so a slow disk shows what it is doing. A symlinked folder is followed once, so a link loop cannot
    list a folder again and again.
    """
    from tqdm import tqdm

    if path.is_file() and path.suffix.lower() != ".txt":
        raise DataError(f"--data {path} is a file; give a folder of images or a .txt list of image paths.")
    if not path.exists():
        raise DataError(f"--data {path}: no such folder or data set name.")
    listing = Listing([], "", 0)
    h = hashlib.sha256()
    shown = progress and _progress.get()
    with tqdm(desc=f"listing {path.name}", unit=" files", leave=False, disable=not shown) as bar:

        def seen(entries: int) -> None:
            bar.set_postfix_str(f"{len(listing.files):,} images", refresh=False)
            bar.update(entries)

        found = _listed(path, stat, seen) if path.is_file() else _walk(path, stat, listing, seen)
        for name, size, mtime in found:
            if stat:
                h.update(f"{name}\0{size}\0{mtime}\n".encode())
            listing.files.append(name)
    listing.digest = h.hexdigest() if stat else ""
    return listing


#: Entries read between two updates of the listing's progress bar.
_BAR_EVERY = 4096
_Found = tuple[str, int, int]  # a path, its size and modification time in ns (-1 if not looked at or gone)


def _walk(root: Path, stat: bool, listing: Listing, seen: Callable[[int], None]) -> Iterator[_Found]:
    """The image files under `root`, depth first: each folder's files (sorted) before its subfolders (sorted)."""
    visited: set[tuple[int, int]] = set()
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        images: list[_Found] = []
        subfolders: list[str] = []
        try:
            st = os.stat(folder)
            if (st.st_dev, st.st_ino) in visited:  # a symlink back to a folder already listed
                continue
            visited.add((st.st_dev, st.st_ino))
            unseen = 0
            with os.scandir(folder) as entries:
                for entry in entries:
                    unseen += 1
                    if unseen == _BAR_EVERY:
                        seen(unseen)
                        unseen = 0
                    try:
                        if entry.is_dir():
                            subfolders.append(entry.name)
                            continue
                    except OSError:
                        pass
                    if _suffix(entry.name) not in IMAGE_SUFFIXES:
                        listing.others += 1
                    elif not stat:
                        images.append((entry.name, -1, -1))
                    else:
                        try:
                            info = entry.stat()
                            images.append((entry.name, info.st_size, info.st_mtime_ns))
                        except OSError:  # gone since the folder was read: decoding counts it as skipped
                            images.append((entry.name, -1, -1))
            seen(unseen)
        except OSError:  # unreadable, or gone since its parent was read
            continue
        images.sort()
        yield from ((os.path.join(folder, name), size, mtime) for name, size, mtime in images)
        stack.extend(os.path.join(folder, n) for n in sorted(subfolders, reverse=True))


def _suffix(name: str) -> str:
    """`Path(name).suffix.lower()`, at a third of its cost (it runs for every entry of a folder)."""
    dot = name.rfind(".")
    return name[dot:].lower() if 0 < dot < len(name) - 1 else ""


def _listed(listing: Path, stat: bool, seen: Callable[[int], None]) -> Iterator[_Found]:
    """The paths in a .txt list, one per line (relative ones from the list's folder)."""
    with listing.open(encoding="utf-8", errors="surrogateescape") as lines:
        for count, line in enumerate(lines, 1):
            if count % _BAR_EVERY == 0:
                seen(_BAR_EVERY)
            line = line.strip()
            if not line:
                continue
            name = line if os.path.isabs(line) else str(listing.parent / line)
            size = mtime = -1
            if stat:
                try:
                    info = os.stat(name)
                    size, mtime = info.st_size, info.st_mtime_ns
                except OSError:  # missing: decoding counts it as skipped
                    pass
            yield name, size, mtime


def fingerprint(files: Sequence[Path]) -> str:
    """What identifies a set of files' content cheaply: a SHA-256 over each file's path, size and mtime."""
    h = hashlib.sha256()
    for f in files:
        try:
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(f"{f}\0-\n".encode())
    return h.hexdigest()


def _decode_file(path: Path, size: int, channels: int) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        source: Path | io.BytesIO = path
        if path.suffix.lower() in _JPEG_SUFFIXES:
            data = path.read_bytes()
            if _jpeg_shape(data) in ((size, size, 1), (size, size, 3)):
                array = _decode_jpeg(data, channels)
                if array is not None:
                    return array
            source = io.BytesIO(data)  # read once: Pillow takes the bytes already here
        with Image.open(source) as image:
            image.draft("RGB" if channels == 3 else "L", (size, size))  # fast JPEG downscale on decode
            return pil_to_array(image, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


_JPEG_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif"}
#: Start-of-frame markers (baseline, progressive, lossless, arithmetic): they carry the image's size.
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_shape(data: bytes) -> tuple[int, int, int] | None:
    """(height, width, components) from a JPEG's start-of-frame header, or None if it is not found before the
    image data. Read here rather than by `PIL.Image.open`, which parses every header segment in Python and cost
    more than decoding a 64x64 image."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            return int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big"), data[i + 9]
        if marker == 0xDA:  # start of scan: no frame header before the data
            return None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


def _decode_jpeg(data: bytes, channels: int) -> np.ndarray | None:
    """A JPEG already at the training size, decoded by torchvision's libjpeg-turbo call: pixel for pixel what
    Pillow's path gives (both ask libjpeg for RGB, or for its luma plane where Pillow's draft asks for "L"), at
    twice the rate on 64x64 faces, where Pillow's per-image Python work rather than the decoding dominated.
    None where this torchvision has no such call (it is deprecated for TorchCodec) or refuses the file: Pillow
    decodes instead."""
    decode = _jpeg_decoder()
    if decode is None:
        return None
    try:
        return decode(bytearray(data), channels)
    except RuntimeError:  # what this decoder refuses, Pillow decodes or refuses itself
        return None


@functools.cache
def _jpeg_decoder() -> Callable[[bytearray, int], np.ndarray] | None:
    try:
        import torch
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None
    # Said on every call, to every user, about a call they did not make; the fallback above covers its removal.
    warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision")
    modes = {1: ImageReadMode.GRAY, 3: ImageReadMode.RGB}

    def decode(data: bytearray, channels: int) -> np.ndarray:
        return decode_jpeg(torch.frombuffer(data, dtype=torch.uint8), mode=modes[channels]).numpy()

    return decode


def decode_all(
    items: Iterable[tuple[str, Callable[[], np.ndarray | None]]],
    total: int,
    size: int,
    channels: int,
    desc: str,
) -> Decoded:
    """Run each item's decoder on a thread pool (Pillow and libjpeg release the GIL), keeping order, with a
    progress bar. Items go to the pool in chunks: one future per small image cost as much as decoding it."""
    from tqdm import tqdm

    images = np.empty((total, channels, size, size), dtype=np.uint8)
    kept: list[str] = []
    skipped: list[str] = []
    workers = min(8, (os.cpu_count() or 1) + 1)
    bar = tqdm(total=total, desc=desc, unit="img", leave=False, disable=not _progress.get())
    with ThreadPoolExecutor(workers) as pool, bar:
        pending: list[tuple[list[str], Future[list[np.ndarray | None]]]] = []
        for chunk in _chunks(items, _CHUNK):
            names = [name for name, _ in chunk]
            pending.append((names, pool.submit(_run_chunk, [job for _, job in chunk])))
            if len(pending) * _CHUNK >= 4096:  # bound what waits in memory
                _collect(pending, images, kept, skipped, bar)
        _collect(pending, images, kept, skipped, bar)
    return Decoded(images[: len(kept)], kept, skipped)


_CHUNK = 256


def _run_chunk(jobs: list[Callable[[], np.ndarray | None]]) -> list[np.ndarray | None]:
    return [job() for job in jobs]


def _chunks(items: Iterable[T], n: int) -> Iterator[list[T]]:
    rest = iter(items)
    return iter(lambda: list(itertools.islice(rest, n)), [])


def _collect(pending, images, kept, skipped, bar) -> None:  # type: ignore[no-untyped-def]
    for names, job in pending:
        for name, array in zip(names, job.result()):
            if array is None:
                skipped.append(name)
            else:
                images[len(kept)] = array
                kept.append(name)
        bar.update(len(names))
    pending.clear()


def decode_folder(path: Path, files: Sequence[str], size: int, channels: int) -> Decoded:
    """Decode `files` (the image files `scan` found in `path`), skipping and counting those that fail."""
    if not files:
        raise DataError(
            f"--data {path} holds no image files (looked recursively for {', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...)."
        )
    items = ((f, (lambda f=f: _decode_file(Path(f), size, channels))) for f in files)
    decoded = decode_all(items, len(files), size, channels, desc=f"decoding {path.name}")
    if not decoded.files:
        raise DataError(
            f"--data {path}: none of its {len(files):,} image files could be decoded "
            f"(e.g. {examples(decoded.skipped, path if path.is_dir() else path.parent)})."
        )
    return decoded


def examples(files: Sequence[str], root: str | Path, n: int = 3) -> str:
    """The first `n` of `files`, relative to `root` where they are under it, for a message."""
    inside = os.path.join(str(root), "")
    shown = [f[len(inside) :] if f.startswith(inside) else f for f in files[:n]]
    return ", ".join(shown) + (", ..." if len(files) > n else "")
