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


def load_cached(name: str) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]] | None:
    """The images, labels and metadata stored under `name`, or None if absent or unreadable."""
    base = cache_dir() / name
    try:
        meta = json.loads((base.with_suffix(".json")).read_text())
        images_path = base.with_suffix(".images.npy")
        big = images_path.stat().st_size > MMAP_BYTES
        images = np.load(images_path, mmap_mode="r" if big else None, allow_pickle=False)
        labels_path = base.with_suffix(".labels.npy")
        labels = np.load(labels_path, allow_pickle=False) if labels_path.exists() else None
    except (OSError, ValueError, json.JSONDecodeError):
        return None
    return images, labels, meta


def store_cached(name: str, images: np.ndarray, labels: np.ndarray | None, meta: dict[str, Any]) -> None:
    """Save a decoded set; failures (read-only home, full disk) only cost the next run a re-decode."""
    base = cache_dir() / name
    try:
        _atomic_save(base.with_suffix(".images.npy"), images)
        if labels is not None:
            _atomic_save(base.with_suffix(".labels.npy"), labels)
        # The metadata goes last: it marks the entry complete.
        base.with_suffix(".json").write_text(json.dumps(meta))
    except OSError:
        pass
