"""The on-disk cache of decoded data sets: uint8 `.npy` arrays, written atomically, read memory-mapped."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Arrays larger than this are memory-mapped rather than read into RAM.
MMAP_BYTES = 2 << 30


def cache_dir() -> Path:
    """`$DCGAN_CACHE`, else `$XDG_CACHE_HOME/dcgan`, else `~/.cache/dcgan`."""
    if os.environ.get("DCGAN_CACHE"):
        return Path(os.environ["DCGAN_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dcgan"


def cache_key(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _file(name: str, suffix: str) -> Path:
    """The cache file for an entry: the suffix is appended, never substituted, and leading dots are dropped,
    so names made from paths like `../data` cannot collapse onto one file."""
    return cache_dir() / (name.lstrip(".") + suffix)


def load_cached(name: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
    """The images, labels and metadata stored under `name`, or None if absent or unreadable."""
    try:
        meta = json.loads((_file(name, ".json")).read_text())
        images_path = _file(name, ".images.npy")
        big = images_path.stat().st_size > MMAP_BYTES
        images = np.load(images_path, mmap_mode="r" if big else None, allow_pickle=False)
        labels_path = _file(name, ".labels.npy")
        labels = np.load(labels_path, allow_pickle=False) if labels_path.exists() else None
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return images, labels, meta


def store_cached(name: str, images: np.ndarray, labels: np.ndarray | None, meta: dict[str, Any]) -> None:
    """Save a decoded set; failures (read-only home, full disk) only cost the next run a re-decode."""
    try:
        _atomic_save(_file(name, ".images.npy"), images)
        if labels is not None:
            _atomic_save(_file(name, ".labels.npy"), labels)
        # The metadata goes last: it marks the entry complete.
        _file(name, ".json").write_text(json.dumps(meta))
    except OSError:
        pass
