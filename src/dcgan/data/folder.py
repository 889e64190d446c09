"""Any folder of images (recursive, every format Pillow reads), or a text file listing image paths.

Files that cannot be decoded are skipped and counted, never fatal: scraped folders are full of them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dcgan.data.transform import pil_to_array
from dcgan.errors import DataError

#: Suffixes worth opening; other files (e.g. .txt, .json) are ignored without counting as skipped.
IMAGE_SUFFIXES = {
    ".bmp", ".dib", ".gif", ".ico", ".jfif", ".jpe", ".jpeg", ".jpg", ".pbm", ".pcx", ".pgm", ".png",
    ".pnm", ".ppm", ".qoi", ".sgi", ".tga", ".tif", ".tiff", ".webp", ".avif", ".heic", ".dds", ".icns",
}  # fmt: skip


@dataclass
class Decoded:
    images: np.ndarray  # (N, C, size, size) uint8
    files: list[str]  # the file each image came from, in order
    skipped: list[str]  # files that could not be decoded


def list_images(path: Path) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the paths listed in a .txt file (one per line)."""
    if path.is_file():
        if path.suffix.lower() != ".txt":
            raise DataError(f"--data {path} is a file; give a folder of images or a .txt list of image paths.")
        lines = [line.strip() for line in path.read_text().splitlines()]
        return [(path.parent / line) if not os.path.isabs(line) else Path(line) for line in lines if line]
    if not path.is_dir():
        raise DataError(f"--data {path}: no such folder or data set name.")
    files = []
    for root, dirs, names in os.walk(path, followlinks=True):
        dirs.sort()
        files += [Path(root) / n for n in sorted(names) if Path(n).suffix.lower() in IMAGE_SUFFIXES]
    return files


def fingerprint(files: Sequence[Path]) -> list[tuple[str, int, int]]:
    """What identifies a folder's content cheaply: each file's path, size and mtime."""
    out = []
    for f in files:
        try:
            st = f.stat()
            out.append((str(f), st.st_size, st.st_mtime_ns))
        except OSError:
            out.append((str(f), -1, -1))
    return out


def _decode_file(path: Path, size: int, channels: int) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.draft("RGB" if channels == 3 else "L", (size, size))  # fast JPEG downscale on decode
            return pil_to_array(image, size, channels)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None


def decode_all(
    items: Iterable[tuple[str, Callable[[], np.ndarray | None]]],
    total: int,
    size: int,
    channels: int,
    desc: str,
) -> Decoded:
    """Run each item's decoder on a thread pool (Pillow releases the GIL), keeping order, with a progress bar."""
    from tqdm import tqdm

    images = np.empty((total, channels, size, size), dtype=np.uint8)
    kept: list[str] = []
    skipped: list[str] = []
    workers = min(8, (os.cpu_count() or 1) + 1)
    with ThreadPoolExecutor(workers) as pool, tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        names, jobs = [], []
        for name, job in items:
            names.append(name)
            jobs.append(pool.submit(job))
            if len(jobs) >= 4096:
                _collect(names, jobs, images, kept, skipped, bar)
                names, jobs = [], []
        _collect(names, jobs, images, kept, skipped, bar)
    return Decoded(images[: len(kept)], kept, skipped)


def _collect(names, jobs, images, kept, skipped, bar) -> None:  # type: ignore[no-untyped-def]
    for name, job in zip(names, jobs):
        array = job.result()
        if array is None:
            skipped.append(name)
        else:
            images[len(kept)] = array
            kept.append(name)
        bar.update(1)


def decode_folder(path: Path, size: int, channels: int) -> Decoded:
    files = list_images(path)
    if not files:
        raise DataError(
            f"--data {path} holds no image files (looked recursively for {', '.join(sorted(IMAGE_SUFFIXES)[:6])}, ...)."
        )
    items = ((str(f), (lambda f=f: _decode_file(f, size, channels))) for f in files)
    decoded = decode_all(items, len(files), size, channels, desc=f"decoding {path.name}")
    if not decoded.files:
        raise DataError(f"--data {path}: none of its {len(files)} image files could be decoded.")
    return decoded
