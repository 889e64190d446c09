"""Readers for the official on-disk formats: IDX (MNIST family), CIFAR pickles, SVHN .mat, LSUN LMDB.

Each returns raw uint8 arrays (N, H, W, C) plus labels; resizing happens in `dcgan.data.transform`.
CIFAR's batches are Python pickles, so they go through `SafeUnpickler`, which only rebuilds NumPy arrays:
a batch file crafted to run code is refused, never executed.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, ClassVar, cast

import numpy as np

from dcgan.errors import DataError


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.GzipFile(path, "rb"))
    return open(path, "rb")


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST, Fashion-MNIST), gzipped or not; the count comes from the header."""
    try:
        with _open(path) as f:
            magic = f.read(4)
            if len(magic) != 4 or magic[0] or magic[1] or magic[2] != 0x08:
                raise DataError(f"{path} is not an IDX file of unsigned bytes.")
            ndim = magic[3]
            shape = struct.unpack(f">{ndim}I", f.read(4 * ndim))
            data = np.frombuffer(f.read(), dtype=np.uint8)
    except (OSError, EOFError, struct.error) as exc:
        raise DataError(f"Could not read {path}: {exc}.") from exc
    count = int(np.prod(shape))
    if data.size < count:
        raise DataError(f"{path} is truncated: its header promises {count} bytes, it holds {data.size}.")
    return data[:count].reshape(shape)


class SafeUnpickler(pickle.Unpickler):
    """Unpickles plain containers and NumPy arrays only; any other global is refused."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"Refusing to load {module}.{name} from a data file: it is not plain data.")


def read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch -> images (N, 32, 32, 3) uint8 and labels (N,)."""
    try:
        with open(path, "rb") as f:
            batch = SafeUnpickler(f, encoding="latin1").load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        raise DataError(f"Could not read the CIFAR batch {path}: {exc}.") from exc
    if not isinstance(batch, dict) or "data" not in batch:
        raise DataError(f"{path} is not a CIFAR batch (no 'data' key).")
    images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = np.asarray(batch.get("labels", batch.get("fine_labels", [])), dtype=np.int64)
    return images, labels


def read_svhn_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN's cropped-digit .mat (`X`: 32x32x3xN, `y`: 1..10 with 10 meaning 0) -> (N, 32, 32, 3), labels 0..9."""
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"Could not read the SVHN file {path}: {exc}.") from exc
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} is not an SVHN .mat file (it lacks X and y).")
    images = np.ascontiguousarray(np.transpose(mat["X"], (3, 0, 1, 2)).astype(np.uint8))
    labels = mat["y"].reshape(-1).astype(np.int64) % 10
    return images, labels


def iter_lmdb_images(path: Path) -> Iterator[tuple[str, bytes]]:
    """(key, encoded image bytes) for every entry of an LSUN LMDB database."""
    try:
        import lmdb
    except ImportError as exc:
        raise DataError("Reading LSUN needs the lmdb package: pip install lmdb.") from exc
    try:
        env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=1)
    except lmdb.Error as exc:
        raise DataError(f"Could not open the LMDB database {path}: {exc}.") from exc
    with env.begin(write=False) as txn:
        for key, value in txn.cursor():
            yield key.decode(errors="replace"), bytes(value)
    env.close()


def decode_bytes(data: bytes) -> Any:
    """Encoded image bytes -> a PIL image, or None when they cannot be decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        image.load()
        return image
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None
